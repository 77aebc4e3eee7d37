"""Published, versioned JSON Schemas (generated from :mod:`marktrace.inference.records`)."""

"""marktrace: read, recover and record the markings on small arms and light weapons.

Importing this package has no side effects: no model is loaded and nothing is downloaded.
"""

__version__ = "0.5.11"

"""The forensic lab HTTP API (FastAPI on uvicorn; needs the ``[service]`` extra)."""

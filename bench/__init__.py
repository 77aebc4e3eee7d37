"""Benchmark of marktrace against general OCR engines (EasyOCR, RapidOCR, Tesseract) on held-out sets.

Run ``python -m bench.recognition --help`` from the repository root. Not installed with the wheel.
"""

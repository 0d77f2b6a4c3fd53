"""Extraction: images plus a prompt in, content and usage out.

No Celery and no database here: the workers (``worker/``) and ``imageextract extract``
(``cli/``) both call it. ``contract`` holds the types every part shares, ``images``
normalises an image for a model, ``providers`` are the models (a remote OpenAI-compatible
server, or the embedded ``engine``), and ``batch`` runs a folder of images in one process.
"""

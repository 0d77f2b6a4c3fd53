"""The ``imageextract`` command: the entry points above every other layer.

``main`` gathers one module per command group (as warehouse's ``warehouse/cli/``):
``database`` (migrate), ``accounts`` (accounts and keys), ``credits``, ``processes``
(worker, beat), ``server`` (api, serve) and ``extract``. It starts the API and worker
processes (as processes, never by importing tasks) and manages accounts through ``core``.
"""

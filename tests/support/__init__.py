"""What the tests share besides fixtures: one module per topic, imported as ``support.<topic>``.

``tests/`` has no ``__init__.py``, so pytest's default (``prepend``) import mode puts it on
``sys.path`` when it loads ``tests/conftest.py``, in every ``pytest -n`` worker as without
``-n``: ``from support.output import line_of`` works from any test folder.
"""

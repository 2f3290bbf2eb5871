"""Renderers: the only modules that import rich or jinja2."""

"""Sphinx configuration: the Markdown pages under docs/, read by MyST, built by `make docs`.

Warnings are errors (`make docs` passes -W), so a broken cross-reference, a heading anchor that
does not exist or a page left out of the table of contents fails the build.
"""

project = "live-relay"
author = "the live-relay authors"
copyright = "the live-relay authors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# `page.md#a-heading` links resolve to headings down to this level, with GitHub's slugs, so the
# same links work on GitHub and in the built site.
myst_heading_anchors = 4
# Links to files outside docs/ (docker/kubernetes/, tests/) are left as plain links.
myst_enable_extensions: list[str] = []

html_theme = "alabaster"
# Wide enough for the configuration and metrics tables.
html_theme_options = {"page_width": "1240px"}
html_title = "live-relay"
html_show_sourcelink = False

"""Developer tools shipped with seasync (``sync-observer``) and maintenance scripts."""

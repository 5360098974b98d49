"""``python -m router.front_cli``: kept for scripts that run the front that way (router/front/cli.py)."""

from router.front.cli import app, main  # noqa: F401

if __name__ == "__main__":
    main()

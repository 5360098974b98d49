"""End-to-end tests: real clusters driven through user-facing tools (terminal UI, browser)."""

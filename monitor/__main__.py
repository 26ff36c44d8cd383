"""`python -m monitor` is the same as the `monitor` command."""

# Guarded: worker processes started with "spawn" import this module as __mp_main__.
if __name__ == "__main__":
    try:
        from monitor.cli import main
    except KeyboardInterrupt:  # Ctrl-C before the command even started: no traceback
        raise SystemExit(130) from None
    raise SystemExit(main())

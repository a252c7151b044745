"""One-line errors for users, and the wrapper that prints them instead of a traceback."""
import sys


class UserError(Exception):
    """A problem with the user's input (a path, a flag, a file). Printed as one line, exit code 2."""


def run_cli(main):
    """Run `main()`; print a UserError as `error: ...` and exit 2, never a traceback."""
    try:
        code = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)

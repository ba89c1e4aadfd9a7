"""What fxbn's command lines share: a usage error prints the usage and one line, and exits with 64 (EX_USAGE)."""
import argparse
import sys

EXIT_USAGE = 64


class UsageParser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parser(prog, doc):
    """A UsageParser whose description is the docstring's first line and whose epilog is the rest (from line 3)."""
    lines = doc.strip().splitlines()
    return UsageParser(prog=prog, description=lines[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n".join(lines[2:]))

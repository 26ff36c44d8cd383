"""`monitor completion bash|zsh|fish`: shell completion, by argcomplete.

The printed script asks `monitor` itself for completions (with `_ARGCOMPLETE` set), so they
always match the installed version's commands and options. Only then is argcomplete loaded:
a normal run never imports it.

    eval "$(monitor completion bash)"                       # ~/.bashrc
    eval "$(monitor completion zsh)"                        # ~/.zshrc
    monitor completion fish > ~/.config/fish/completions/monitor.fish
"""

from __future__ import annotations

import argparse

import argcomplete
from argcomplete.shell_integration import shellcode

from monitor.cli import EXIT_OK


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit (argcomplete does both)."""
    argcomplete.autocomplete(parser)


def cmd_completion(args: argparse.Namespace) -> int:
    print(shellcode(["monitor"], shell=args.shell), end="")
    return EXIT_OK

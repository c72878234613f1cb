#!/usr/bin/env python3
"""Generate symphonyctl's man page and bash completion from its argparse parser.

    .venv/bin/python packaging/gen-cli-docs.py          # rewrite the committed files
    .venv/bin/python packaging/gen-cli-docs.py --check  # exit 1 if they are stale

Both files come from the same walk over the parser, so a new command or option shows up in
both or the ``--check`` run in tests/ctl/test_clidocs.py fails. Hand-written roff rather
than argparse-manpage: it keeps the build free of another package and renders nested
command groups (``workflow check``) the way the rest of this page does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from symphonyd.ctl.main import build_parser  # noqa: E402

MAN = Path("man/symphonyctl.1")
COMPLETION = Path("completion/symphonyctl")
# Options whose value is a path get file-name completion.
PATH_METAVARS = {"PATH", "FILE", "DIR", "FILE.json", "SOCKET"}

EXIT_STATUS = (
    ("0", "Success; for doctor and audit verify, nothing failed."),
    ("1", "A check failed or the daemon refused the request (unknown issue, broken chain)."),
    ("2", "Usage or validation error: bad arguments, invalid duration, invalid workflow."),
    ("3", "A daemon is unreachable (its socket is missing or nobody answers)."),
    ("4", "audit verify: the chain holds but is cut short of, or differs from, its anchor."),
)
ENVIRONMENT = (
    ("SYMPHONY_DISPATCHER_SOCKET", "Dispatcher control socket; overrides the host config."),
    ("SYMPHONY_ISSUES_DIR", "Issue directory of the local tracker (issue commands)."),
    ("SYMPHONY_AUDIT_DIR", "Audit directory (audit commands)."),
    ("SYMPHONY_CONFIG", "Host config file (workspace path)."),
)
FILES = (
    ("/etc/symphony/symphonyd.toml", "Host configuration."),
    ("/etc/symphony/WORKFLOW.md", "Workflow: tracker, agent, prompt."),
    ("/etc/symphony/credentials/tracker", "Tracker token, loaded with LoadCredential=."),
    ("/run/symphony/dispatcher-ctl.sock", "Dispatcher control socket (root only)."),
)


@dataclass
class Command:
    path: tuple[str, ...]
    help: str
    parser: argparse.ArgumentParser
    children: list[Command] = field(default_factory=list)


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), help_text: str = ""
) -> Command:
    node = Command(path, help_text or (parser.description or ""), parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                node.children.append(walk(sub, (*path, name), helps.get(name, "")))
    return node


def flatten(node: Command) -> list[Command]:
    return [node, *(c for child in node.children for c in flatten(child))]


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    return (action.dest or "").upper()


# ---- man page ---------------------------------------------------------------------------


def roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in {".", "'"} else text


def synopsis(cmd: Command) -> str:
    parts = [f"\\fBsymphonyctl {roff(' '.join(cmd.path))}\\fR"]
    for a in options(cmd.parser):
        if a.dest == "help":
            continue
        flag = roff(a.option_strings[-1])
        arg = f" \\fI{roff(metavar(a))}\\fR" if takes_value(a) else ""
        parts.append(f"[\\fB{flag}\\fR{arg}]" if not a.required else f"\\fB{flag}\\fR{arg}")
    for a in positionals(cmd.parser):
        name = f"\\fI{roff(metavar(a) if a.metavar else a.dest.upper())}\\fR"
        parts.append(f"[{name}]" if a.nargs == "?" else name)
    if cmd.children:
        parts.append("\\fIACTION\\fR")
    return " ".join(parts)


def man_page() -> str:
    root = walk(build_parser())
    out = [
        '.TH SYMPHONYCTL 1 "" "symphonyd" "User Commands"',
        ".SH NAME",
        "symphonyctl \\- operate the symphonyd daemon suite",
        ".SH SYNOPSIS",
        "\\fBsymphonyctl\\fR [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        "symphonyctl talks to the symphonyd daemons over their root\\-only Unix sockets,",
        "reads the journal and the local tracker, and checks the host. Every command",
        "accepts \\fB\\-\\-help\\fR. The full guide is /usr/share/doc/symphonyd/symphonyctl.md.",
        ".SH COMMANDS",
    ]
    for cmd in flatten(root)[1:]:
        if cmd.children and not positionals(cmd.parser) and len(options(cmd.parser)) <= 1:
            out += [".SS " + roff(" ".join(cmd.path)), roff(cmd.help)]
            continue
        out += [".SS " + roff(" ".join(cmd.path)), ".nf", synopsis(cmd), ".fi", roff(cmd.help)]
        for a in positionals(cmd.parser):
            out += [".TP", f"\\fI{roff(metavar(a))}\\fR", roff(a.help or "")]
        for a in options(cmd.parser):
            if a.dest == "help":
                continue
            flags = ", ".join(f"\\fB{roff(s)}\\fR" for s in a.option_strings)
            arg = f" \\fI{roff(metavar(a))}\\fR" if takes_value(a) else ""
            out += [".TP", flags + arg, roff(a.help or "")]
    out.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        out += [".TP", f"\\fB{code}\\fR", roff(text)]
    out.append(".SH ENVIRONMENT")
    for name, text in ENVIRONMENT:
        out += [".TP", f"\\fB{name}\\fR", roff(text)]
    out.append(".SH FILES")
    for name, text in FILES:
        out += [".TP", f"\\fI{roff(name)}\\fR", roff(text)]
    out += [".SH SEE ALSO", "\\fBjournalctl\\fR(1), \\fBsystemctl\\fR(1), \\fBnft\\fR(8)"]
    return "\n".join(out) + "\n"


# ---- bash completion --------------------------------------------------------------------


def bash_words(words: list[str]) -> str:
    return " ".join(sorted(words))


def completion() -> str:
    nodes = flatten(walk(build_parser()))
    cmds, opts, valued = [], [], []
    for n in nodes:
        # bash refuses an empty key, so every key starts with the program name.
        key = " ".join(("symphonyctl", *n.path))
        cmds.append(f'  ["{key}"]="{bash_words([c.path[-1] for c in n.children])}"')
        flags = [s for a in options(n.parser) for s in a.option_strings]
        opts.append(f'  ["{key}"]="{bash_words(flags)}"')
        vals = [
            s + (":path" if metavar(a) in PATH_METAVARS else "")
            for a in options(n.parser)
            if takes_value(a)
            for s in a.option_strings
        ]
        valued.append(f'  ["{key}"]="{bash_words(vals)}"')
    return "\n".join(
        [
            "# bash completion for symphonyctl; generated by packaging/gen-cli-docs.py.",
            "",
            "declare -gA _symphonyctl_cmds=(",
            *cmds,
            ")",
            "declare -gA _symphonyctl_opts=(",
            *opts,
            ")",
            "declare -gA _symphonyctl_valued=(",
            *valued,
            ")",
            "",
            "_symphonyctl() {",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            "    local path=symphonyctl w i skip=0",
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        w="${COMP_WORDS[i]}"',
            "        if ((skip)); then skip=0; continue; fi",
            '        if [[ " ${_symphonyctl_valued[$path]} " == *" $w "* ||'
            ' " ${_symphonyctl_valued[$path]} " == *" $w:path "* ]]; then',
            "            skip=1; continue",
            "        fi",
            '        if [[ " ${_symphonyctl_cmds[$path]} " == *" $w "* ]]; then',
            '            path="$path $w"',
            "        fi",
            "    done",
            "    if ((skip)); then",
            '        if [[ " ${_symphonyctl_valued[$path]} " == *" $prev:path "* ]]; then',
            '            mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
            "        fi",
            "        return 0",
            "    fi",
            '    if [[ "$cur" == -* ]]; then',
            '        mapfile -t COMPREPLY < <(compgen -W "${_symphonyctl_opts[$path]}" -- "$cur")',
            "    else",
            '        mapfile -t COMPREPLY < <(compgen -W "${_symphonyctl_cmds[$path]}" -- "$cur")',
            "    fi",
            "}",
            "complete -F _symphonyctl symphonyctl",
            "",
        ]
    )


def outputs() -> dict[Path, str]:
    return {MAN: man_page(), COMPLETION: completion()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument(
        "--out-dir", type=Path, default=REPO / "packaging", help="default: packaging/"
    )
    args = parser.parse_args()
    stale = []
    for rel, text in outputs().items():
        target = args.out_dir / rel
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target}")
    if stale:
        print(
            "stale: " + ", ".join(stale) + "; run .venv/bin/python packaging/gen-cli-docs.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

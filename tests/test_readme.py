"""The README's shell examples work as written: files they send exist in the repo,
and URLs with `&` are quoted (the shell would cut them there)."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def curl_commands():
    """Every curl command of the README's bash blocks, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("#", 1)[0] if command.lstrip().startswith("curl") else command
            if re.search(r"\bcurl\b", command):
                yield command


def test_there_are_examples():
    assert len(list(curl_commands())) > 20


def test_files_sent_by_the_examples_are_in_the_repo():
    sent = [
        name
        for command in curl_commands()
        for name in re.findall(r"=@([^\s\"';]+)", command)
        if not name.startswith("$")
    ]
    assert sent, "the README has upload examples"
    missing = sorted({name for name in sent if not (ROOT / name).is_file()})
    assert missing == []


def test_urls_with_an_ampersand_are_quoted():
    unquoted = [
        command for command in curl_commands() if "&" in QUOTED.sub("", command.split("&&")[0])
    ]
    assert unquoted == []

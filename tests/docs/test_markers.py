"""The doctest marker syntax (tests/docs/README.md), and that every document of the
repository follows it (fast: nothing runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.examples import (
    MarkerError,
    all_examples,
    markdown_examples,
    parse_marker,
    yaml_examples,
)

DOC = Path("doc.md")


def test_markers_parse() -> None:
    assert parse_marker(' skip reason="needs a Docker engine" ', "x") == {
        "kind": "skip",
        "reason": "needs a Docker engine",
    }
    assert parse_marker("setup", "x") == {"kind": "setup"}
    assert parse_marker('k8s cwd=repo expect="^demo "', "x") == {
        "kind": "k8s",
        "cwd": "repo",
        "expect": ("^demo ",),
    }
    assert parse_marker('cwd=repo timeout=240 exit=1 expect="^a$" expect="b c"', "x") == {
        "cwd": "repo",
        "timeout": 240.0,
        "exit": 1,
        "expect": ("^a$", "b c"),
    }


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("skip", "must say why"),
        ('skip reason=""', "needs a value"),
        ("skpi", "unknown doctest directive 'skpi'"),
        ("setup teardown", "one of skip, setup, teardown, k8s"),
        ("k8s skip", "one of skip, setup, teardown, k8s"),
        ("k8s=1", "takes no value"),
        ("exit=one", "exit must be a number"),
        ("timeout=soon", "timeout must be seconds"),
        ("cwd=/tmp", "cwd is session or repo"),
        ('expect="("', "not a regex"),
        ('reason="x"', "reason= belongs to skip"),
        ('skip reason="unterminated', "bad doctest marker"),
        ("setup=1", "takes no value"),
    ],
)
def test_bad_markers_are_errors(body: str, error: str) -> None:
    with pytest.raises(MarkerError, match=error):
        parse_marker(body, "doc.md:3")


def test_markdown_blocks_and_markers() -> None:
    text = """# Title

```sh
raftkv get a
```

<!-- doctest: skip reason="needs docker" -->
```bash
docker info
```

````shell
echo '```'
````

```text
raftkv put KEY [VALUE]
```

```python
print("python")
```

```json
{"not": "an example"}
```

```
node/   the layout, not a command
```
"""
    examples = markdown_examples(text, DOC)
    assert [(e.line, e.kind, e.code) for e in examples] == [
        (3, "run", "raftkv get a\n"),
        (8, "skip", "docker info\n"),
        (12, "run", "echo '```'\n"),
        (20, "run", 'print("python")\n'),
    ]
    assert [e.lang for e in examples] == ["sh", "sh", "sh", "python"]
    assert examples[1].reason == "needs docker"
    assert examples[0].id == "doc.md:3"


def test_a_fence_in_a_list_item_is_found() -> None:
    text = (
        "- first start a cluster:\n\n  <!-- doctest: setup -->\n  ```sh\n  raftkv local up\n  ```\n"
    )
    [example] = markdown_examples(text, DOC)
    assert (example.line, example.kind, example.code) == (4, "setup", "raftkv local up\n")


def test_a_command_block_without_an_info_string_is_an_error() -> None:
    with pytest.raises(MarkerError, match="doc.md:2: this block shows a command"):
        markdown_examples("\n```\nraftkv put a b\n```\n", DOC)


def test_a_marker_must_sit_right_before_a_fence() -> None:
    with pytest.raises(MarkerError, match="right before a code fence"):
        markdown_examples('<!-- doctest: skip reason="x" -->\n\n```sh\nls\n```\n', DOC)
    with pytest.raises(MarkerError, match="only sh/bash/shell/python blocks"):
        markdown_examples('<!-- doctest: skip reason="x" -->\n```json\n{}\n```\n', DOC)


def test_a_k8s_example_is_a_shell_block() -> None:
    [example] = markdown_examples("<!-- doctest: k8s -->\n```sh\nkubectl get rkc\n```\n", DOC)
    assert (example.kind, example.code) == ("k8s", "kubectl get rkc\n")
    with pytest.raises(MarkerError, match="k8s examples are shell blocks"):
        markdown_examples("<!-- doctest: k8s -->\n```python\nprint(1)\n```\n", DOC)


def test_yaml_comment_commands() -> None:
    text = """# A cluster.
# doctest: skip reason="needs Kubernetes"
#   kubectl apply -f examples/minimal.yaml
#   kubectl get raftclusters        # or: kubectl get rkc
apiVersion: v1
#   raftkv status
#  restore:
"""
    examples = yaml_examples(text, Path("m.yaml"))
    assert [(e.line, e.kind, e.code) for e in examples] == [
        (
            3,
            "skip",
            "kubectl apply -f examples/minimal.yaml\n"
            "kubectl get raftclusters        # or: kubectl get rkc\n",
        ),
        (6, "run", "raftkv status\n"),
    ]


def test_every_document_of_the_repository_follows_the_syntax() -> None:
    examples = all_examples()
    kinds = {e.kind for e in examples}
    assert {"run", "setup", "teardown", "skip", "k8s"} <= kinds
    assert any(
        e.path == Path("README.md")
        and "raftkv lock acquire jobs -- ./run-job.sh" in e.code
        and e.kind == "run"
        for e in examples
    )

from __future__ import annotations

import csv
import json

import pytest

from issuelab.data import Issue, read_issues, write_jsonl
from issuelab.errors import DataError
from issuelab.importers import import_issues

LABELS = ["bug", "feature", "question"]


def test_jsonl_round_trip_is_lossless(tmp_path):
    issues = [
        Issue(1, "Ünïcödé 🐛 — 漢字", "line one\r\nline two\rthree\u2028four\u0000", ["bug"]),
        Issue("gh-2", "empty body", "", []),
        Issue(3, "null body", None, ["feature", "question"], {"repo": "a/b", "number": 3, "source": "human"}),
        Issue(4, "big", "x" * 100_000 + "\n```\n{[]}\n", ["bug"], {"created_at": "2024-01-01T00:00:00Z"}),
        Issue(5, "quotes \" and \\ and \t tab", "  leading and trailing spaces  ", ["question"]),
    ]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(first, issues)
    loaded = read_issues(first, LABELS)
    assert loaded == issues
    write_jsonl(second, loaded)
    assert first.read_bytes() == second.read_bytes()
    assert "🐛".encode() in first.read_bytes()  # written as UTF-8, not \u escapes


def test_reads_crlf_files_and_skips_blank_lines(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"id": 1, "title": "a", "body": "x\\r\\ny", "labels": ["bug"]}\r\n\r\n{"id": 2, "title": "b", "labels": []}\r\n')
    issues = read_issues(path, LABELS)
    assert [i.id for i in issues] == [1, 2]
    assert issues[0].body == "x\r\ny" and issues[1].body is None


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": 1, "title": "a", "labels": ["bug"]', "malformed JSON"),
        ('[1, 2]', "expected a JSON object, got list"),
        ('{"title": "a", "labels": []}', "field 'id' is missing"),
        ('{"id": 1, "title": null, "labels": []}', "field 'title': expected a string"),
        ('{"id": 1, "title": "a", "body": 5, "labels": []}', "field 'body': expected a string or null"),
        ('{"id": 1, "title": "a"}', "field 'labels' is missing"),
        ('{"id": 1, "title": "a", "labels": "bug"}', "field 'labels': expected a list of strings"),
        ('{"id": 1, "title": "a", "labels": ["wontfix"]}', "unknown label 'wontfix'"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 0, "title": "ok", "body": null, "labels": ["bug"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_issues(path, LABELS)
    assert f"{path}:2:" in str(info.value)
    assert message in str(info.value)


def test_unknown_labels_aliases_and_drop_unknown(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"id": 1, "title": "a", "body": None, "labels": ["Bug", "enhancement", "wontfix"]}])
    with pytest.raises(DataError, match="--alias 'enhancement=LABEL', or pass --drop-unknown"):
        read_issues(path, LABELS)
    issues = read_issues(path, LABELS, aliases={"enhancement": "feature"}, drop_unknown=True)
    assert issues[0].labels == ["bug", "feature"]  # case-folded to the config's spelling


def test_empty_dataset_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no issues in the file"):
        read_issues(path, LABELS)
    assert read_issues(path, LABELS, allow_empty=True) == []


def write_csv(path, rows, header=("repo", "created_at", "label", "title", "body")):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_import_nlbse_csv_filtered_by_repo(tmp_path):
    path = tmp_path / "issues.csv"
    write_csv(path, [
        ("facebook/react", "2023-08-26 06:33:37", "bug", 'Crash with "quotes"', "multi\nline\r\nbody, with commas"),
        ("tensorflow/tensorflow", "2023-08-27", "feature", "Add op", "x" * 150_000),
        ("facebook/react", "2023-08-28", "question", "How to?", ""),
    ])  # fmt: skip
    issues, rows = import_issues(path, LABELS, repos=["facebook/react"])
    assert rows == 3
    assert [(i.id, i.labels) for i in issues] == [(1, ["bug"]), (3, ["question"])]  # ids are row numbers
    assert issues[0].body == "multi\nline\r\nbody, with commas"
    assert issues[0].extra == {"repo": "facebook/react", "created_at": "2023-08-26 06:33:37"}
    tf, _ = import_issues(path, LABELS, repos=["tensorflow/tensorflow"])
    assert len(tf[0].body) == 150_000  # beyond csv's default field limit


def test_import_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "issues.csv"
    write_csv(path, [("a/b", "", "bug", "t", "line1\nline2"), ("a/b", "", "wontfix", "t", "b")])
    with pytest.raises(DataError) as info:
        import_issues(path, LABELS)
    assert f"{path}:4: field 'label'" in str(info.value)  # the second record starts on line 4
    assert "unknown label 'wontfix'" in str(info.value)

    issues, _ = import_issues(path, LABELS, aliases={"wontfix": "question"})
    assert issues[1].labels == ["question"]

    missing = tmp_path / "missing.csv"
    write_csv(missing, [("a/b", "bug", "t")], header=("repo", "kind", "title"))
    with pytest.raises(DataError, match=r"column 'labels' not found \(columns: repo, kind, title\); map it with --map labels=COLUMN"):
        import_issues(missing, LABELS)
    issues, _ = import_issues(missing, LABELS, mapping={"labels": "kind"})
    assert issues[0].labels == ["bug"] and issues[0].body is None

    with pytest.raises(DataError, match="no issues imported for --repo x/y"):
        import_issues(path, LABELS, repos=["x/y"])

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("title,label\nok,bug\nonly-one-column\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{ragged}:3: expected 2 columns, found 1"):
        import_issues(ragged, LABELS)

    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        import_issues(empty, LABELS)


def test_import_jsonl_with_github_label_objects_and_separator(tmp_path):
    path = tmp_path / "gh.jsonl"
    rows = [
        {"number": 10, "title": "a", "body": None, "labels": [{"name": "bug"}, {"name": "Feature"}], "url": "u"},
        {"number": 11, "title": "b", "body": "x", "labels": "question;bug"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    issues, _ = import_issues(path, LABELS, label_sep=";")
    assert [(i.id, i.labels) for i in issues] == [(10, ["bug", "feature"]), (11, ["question", "bug"])]
    assert issues[0].extra == {"number": 10, "url": "u"}  # optional fields are kept


def test_import_cli_numbers_rows_across_files(cli, tmp_path):
    config = tmp_path / "issuelab.toml"
    config.write_text('[labels]\nbug = "b"\nfeature = "f"\nquestion = "q"\n', encoding="utf-8")
    first, second = tmp_path / "train.csv", tmp_path / "test.csv"
    write_csv(first, [("a/b", "", "bug", "t1", ""), ("c/d", "", "bug", "t2", "")])
    write_csv(second, [("a/b", "", "feature", "t3", "")])
    out = tmp_path / "issues.jsonl"
    code, stdout, err = cli("import", "--config", config, first, second, "--repo", "a/b", "--out", out)
    assert code == 0, err
    assert "imported 2 issues" in stdout
    assert [i.id for i in read_issues(out, LABELS)] == [1, 3]


def test_written_files_get_the_usual_permissions_not_the_temp_files(tmp_path):
    import os

    from issuelab.data import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "report.json", {"a": 1})
        write_jsonl(tmp_path / "issues.jsonl", [Issue(id=1, title="t", body=None, labels=["bug"])])
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644  # readable by others, as open() would make it
    assert (tmp_path / "issues.jsonl").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issues.jsonl", "report.json"]


def test_import_files_number_rows_across_files_without_an_id_column(tmp_path):
    from issuelab.importers import import_files

    for name, rows in {"a.csv": [("crash", "bug"), ("how?", "question")], "b.csv": [("add x", "feature")]}.items():
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([("title", "labels"), *rows])
    issues = import_files([tmp_path / "a.csv", tmp_path / "b.csv"], LABELS)
    assert [(i.id, i.title, i.labels) for i in issues] == [(1, "crash", ["bug"]), (2, "how?", ["question"]), (3, "add x", ["feature"])]

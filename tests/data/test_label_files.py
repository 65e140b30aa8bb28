"""Label files: every bad line is one `file:line` error (or one skipped row), names keep their exact characters,
and no row makes mome read media outside the corpus root."""

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mome.config import DataConfig
from mome.data.dataset import AVDataset
from mome.data.labels import LabelError, LabelRow, read_labels, write_labels

GOOD = "synth,synth/a/00001,12,place red at a three soon\n"


def _labels(tmp_path, content: bytes | str):
    path = tmp_path / "l.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (b"synth,synth/a/00002,12,caf\xe9 au lait\n", "not UTF-8"),
        (b"synth,synth/a/00002,12," + b"x" * 200_000 + b"\n", "longer than 131072 characters"),
        (b'synth,synth/a/00002,12,"an open quote\n', "unterminated quote"),
        (b'synth,synth/a/00002,12,"a line\rbreak"\n', "line break"),
    ],
)
def test_bad_line_is_one_error_and_the_rest_is_read(tmp_path, bad_line, reason):
    path = _labels(tmp_path, GOOD.encode() + bad_line + GOOD.replace("00001", "00003").encode())
    rows, problems = read_labels(path)
    assert [r.rel_path for r in rows] == ["synth/a/00001", "synth/a/00003"]  # the quote swallowed nothing
    assert len(problems) == 1 and problems[0].startswith(f"{path}:2: ") and reason in problems[0]
    assert len(problems[0]) < 300 and "\n" not in problems[0]
    with pytest.raises(LabelError, match=f"l.csv:2: .*{reason}"):
        read_labels(path, strict=True)


def test_names_keep_their_exact_characters(tmp_path):
    rows = [LabelRow("lrs3", "lrs3/spk /00001 ", 10, "hello"), LabelRow("lrs3", " x", 10, "a b")]
    write_labels(tmp_path / "l.csv", rows)
    assert read_labels(tmp_path / "l.csv", strict=True)[0] == rows
    # The transcript is still stripped; a byte-order mark is not part of the first name.
    path = _labels(tmp_path, "\ufeffsynth,a/b,12,  hello there \n")
    assert read_labels(path, strict=True)[0] == [LabelRow("synth", "a/b", 12, "hello there")]


def test_a_name_with_a_trailing_space_loads(corpus, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(corpus, root)
    row = read_labels(root / "labels" / "test.csv")[0][0]
    for ext in (".mp4", ".wav"):
        (root / f"{row.rel_path}{ext}").rename(root / f"{row.rel_path} {ext}")
    write_labels(root / "labels" / "space.csv", [LabelRow(row.dataset, row.rel_path + " ", 12, row.transcript)])
    ds = AVDataset(root / "labels" / "space.csv", root, DataConfig(root=str(root)), train=False)
    assert ds[0] is not None and ds[0]["id"] == row.rel_path + " " and not ds.bad


@pytest.mark.parametrize("rel", ["../../../etc/passwd", "/etc/passwd", "synth/../../x", "a/\x00b"])
def test_paths_that_leave_the_root_are_refused(tmp_path, rel):
    path = _labels(tmp_path, GOOD + f"synth,{rel},12,hello\n")
    rows, problems = read_labels(path, root=tmp_path)
    assert [r.rel_path for r in rows] == ["synth/a/00001"]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:2: ")
    assert "leaves the root" in problems[0] or "NUL" in problems[0]


def test_symlinks_out_of_the_root_are_refused(corpus, tmp_path):
    """A symlinked file or folder that points outside the root is refused; one inside it is followed."""
    root, outside = tmp_path / "c", tmp_path / "outside"
    shutil.copytree(corpus, root)
    rows = read_labels(root / "labels" / "test.csv")[0]
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"secret")
    first = root / rows[0].rel_path
    first.with_suffix(".mp4").unlink()
    os.symlink(outside / "secret.mp4", first.with_suffix(".mp4"))  # a file that points out
    os.symlink(outside, root / "escape")  # a folder that points out
    os.symlink(root / "synth", root / "inside")  # a folder that stays in
    extra = [
        LabelRow("synth", "escape/secret", 12, "one"),
        LabelRow("synth", "inside/" + rows[1].rel_path.removeprefix("synth/"), rows[1].input_length, "two"),
    ]
    write_labels(root / "labels" / "links.csv", [rows[0], *extra])
    ds = AVDataset(root / "labels" / "links.csv", root, DataConfig(root=str(root)), train=False)
    assert [r.rel_path for r in ds.rows] == [extra[1].rel_path] and ds[0] is not None
    assert len(ds.label_problems) == 2
    assert all("links.csv:" in p and "outside" in p for p in ds.label_problems)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(max_size=400)
    | st.lists(
        st.sampled_from([b",", b'"', b"\n", b"\r", b"a", b"1", b"\xff", b"..", b"/", b" ", b"\x00"]), max_size=60
    ).map(b"".join)
)
def test_random_bytes_never_give_a_traceback(tmp_path, content):
    path = _labels(tmp_path, content)
    rows, problems = read_labels(path, root=tmp_path)
    assert all(p.startswith(f"{path}:") and "\n" not in p for p in problems)
    assert all(isinstance(r, LabelRow) and r.input_length > 0 and r.transcript for r in rows)
    try:
        assert read_labels(path, strict=True, root=tmp_path)[0] == rows
    except LabelError as err:
        assert str(err) == problems[0]


@pytest.mark.parametrize(
    "line",
    [
        "synth,synth/a/00002,12,place red at a three soon,spk3\n",  # an extra trailing column
        "synth,synth/a/00002,12,place red, at a three soon\n",  # an unquoted comma in the transcript
    ],
)
def test_an_unknown_column_layout_is_refused_with_file_and_line(tmp_path, line):
    """The extra column must never become the reference (WER 600%): the row is refused, named file:line."""
    path = _labels(tmp_path, GOOD + line)
    rows, problems = read_labels(path)
    assert [r.rel_path for r in rows] == ["synth/a/00001"]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:2: unknown column layout: 5 columns whose 4th")
    assert "dataset,rel_path,input_length,transcript" in problems[0] and "\n" not in problems[0]


@pytest.mark.parametrize("ids", ["", "0", "12 4051 7", " 3 "])
def test_the_five_column_layout_takes_token_ids_or_nothing_in_its_4th_column(tmp_path, ids):
    path = _labels(tmp_path, f"lrs3,lrs3/x/00001.mp4,143,{ids},hello there\n")
    assert read_labels(path, strict=True)[0] == [LabelRow("lrs3", "lrs3/x/00001", 143, "hello there")]


def test_training_on_a_file_of_an_unknown_layout_names_its_first_line(corpus, tmp_path):
    from mome.config import load_config
    from mome.errors import UserError
    from mome.training.recipe import train

    labels = tmp_path / "extra.csv"
    rows = (corpus / "labels" / "train.csv").read_text().splitlines()
    labels.write_text("".join(f"{row},speaker\n" for row in rows))
    cfg = load_config(
        "tiny",
        [f"data.root={corpus}", f"data.train_labels={labels}", f"train.output_dir={tmp_path}/r", "train.max_steps=1"],
    )
    with pytest.raises(UserError, match=rf"no usable rows \({len(rows)} malformed; first: {labels}:1: unknown column"):
        train(cfg)

"""MovieLens readers and the messages the demo, the benchmarks and the evaluation send."""

from __future__ import annotations

import calendar
import json
from pathlib import Path

import pytest

from stream.core.contracts import ItemUpsert, decode_event, decode_item
from stream.datasets import movielens
from stream.errors import StreamrankError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Animation\n2,Untitled,(no genres listed)\n',
        encoding="utf-8",
    )
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n10,2,3.0,200\n9,1,4.5,100\n3,1,5.0,200\n", encoding="utf-8"
    )
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n9,1,Pixar,50\n3,1,pixar ,60\n3,1,toys,300\n", encoding="utf-8"
    )
    return tmp_path


def test_ratings_are_read_in_time_order_and_movies_with_their_genres(data: Path) -> None:
    assert [(r.user_id, r.ts) for r in movielens.load_ratings(data)] == [("9", 100), ("3", 200), ("10", 200)]
    movies = movielens.load_movies(data)
    assert [(m.movie_id, m.genres, m.year) for m in movies] == [
        ("1", ("Adventure", "Animation"), 1995),
        ("2", (), None),
    ]


def test_tags_are_case_folded_counted_and_cut_at_a_time(data: Path) -> None:
    assert movielens.load_tags(data) == {"1": ["pixar", "toys"]}
    assert movielens.load_tags(data, before_ts=100) == {"1": ["pixar"]}


def test_messages_are_valid_contract_messages(data: Path) -> None:
    movie = movielens.load_movies(data)[0]
    item = decode_item(json.dumps(movielens.item_message(movie, ["pixar"])).encode(), 2000)
    assert isinstance(item, ItemUpsert)
    assert (item.item_id, item.ts) == ("1", calendar.timegm((1995, 1, 1, 0, 0, 0)))
    assert "pixar" in item.encoder_text()
    rating = movielens.load_ratings(data)[0]
    event = decode_event(json.dumps(movielens.event_message(rating)).encode(), {"rate": 1.0})
    assert (event.user_id, event.item_id, event.type, event.weight) == ("9", "1", "rate", 0.9)


def test_a_directory_without_the_files_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(StreamrankError, match=str(tmp_path)):
        movielens.resolve_data_dir(str(tmp_path), str(tmp_path / "cache"))

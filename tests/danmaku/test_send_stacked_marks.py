"""POST /api/v1/rooms/{room}/danmaku with marks stacked on one character
(issue 13, finding 9): a tower drawn outside the comment's row is refused
with a 400 naming the field; real scripts' stacks go through untouched."""

from __future__ import annotations

import json
import unicodedata

import pytest

from danmaku.models import Danmaku
from danmaku.textrules import MAX_MARKS_PER_CHARACTER

URL = "/api/v1/rooms/{}/danmaku"
KALACHAKRA = "\u0f67\u0f90\u0fb5\u0fa8\u0fb3\u0fba\u0fbc\u0fbb\u0f83"  # 8 marks on one letter


def send(client, text: str, headers: dict):
    return client.post(URL.format("live"), json.dumps({"text": text}), content_type="application/json", **headers)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031ealgo",
            id="zalgo",
        ),
        pytest.param("lol" + "\u0336\u0335\u0337" * 20, id="sixty-overlays-on-one-letter"),
        pytest.param("a" + "\u0301\u200d" * (MAX_MARKS_PER_CHARACTER + 1), id="joiners-between-marks"),
    ],
)
def test_send_with_a_tower_of_marks_is_400_naming_text(client, room, auth_headers, text):
    response = send(client, text, auth_headers)

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "text",
            "reason": f"must not stack more than {MAX_MARKS_PER_CHARACTER} combining marks on one character",
        }
    ]
    assert not Danmaku.objects.exists()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(unicodedata.normalize("NFD", "Người ở đâu? Mỗi ngày một niềm vui"), id="vietnamese-decomposed"),
        pytest.param("ก๋วยเตี๋ยว น้ำใจ ผู้ใหญ่", id="thai"),
        pytest.param("अ॒ग्निमी॑ळे पु॒रोहि॑तं क्षत्रिय", id="devanagari"),
        pytest.param(f"ཨོཾ་བྷྲཱུྃ་ཧཱུྃ {KALACHAKRA}", id="tibetan-stacks"),
        pytest.param("بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ", id="arabic-harakat"),
        pytest.param("בְּרֵאשִׁ֖ית בָּרָ֣א", id="hebrew-cantillation"),
    ],
)
def test_send_of_real_scripts_is_stored_as_sent(client, room, auth_headers, text):
    response = send(client, text, auth_headers)

    assert response.status_code == 201, response.content
    assert Danmaku.objects.get().text == text

"""/model_status says what 8-bit weights buy on the device serving them."""

import pytest
from server_helpers import make_config

from server import create_app

pytest.importorskip("bitsandbytes")


def test_model_status_notes_what_8bit_buys_on_the_cpu(tiny_model_dir, client):
    from core import OptimizedLLM

    assert client.get("/model_status").get_json()["quantization_note"] is None  # not 8-bit
    app = create_app(make_config(), engine=OptimizedLLM(str(tiny_model_dir), load_in_8bit=True))
    status = app.test_client().get("/model_status").get_json()
    assert status["quantization"] == "int8" and status["device"] == "cpu"
    assert "memory" in status["quantization_note"] and "not time" in status["quantization_note"]

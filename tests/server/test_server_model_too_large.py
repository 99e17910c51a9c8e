"""A model that would not fit is refused with 507 before anything is allocated, naming the bytes
needed and available and the settings that would fit; the model serving keeps serving.

The machine's free memory cannot be made small safely here, so the test sets the engine's
pretend limit (``DEEPSHIVA_MEMORY_AVAILABLE``, read by core.backends.footprint) between what the
tiny model needs in fp32 and what it needs with int4 decode weights."""

from __future__ import annotations

import pytest
from server_helpers import make_config
from transformers import AutoConfig

from core import compact_weights
from core.backends import footprint
from server import create_app


@pytest.fixture
def limits(tiny_model_dir) -> dict:
    shape = footprint.shape_of(AutoConfig.from_pretrained(tiny_model_dir))
    return {
        (s.master, s.decode_weights): footprint.footprint(shape, s).total
        for s in footprint.alternatives(shape, kernels=True)
    }


def test_a_model_too_large_is_refused_before_loading_and_the_served_one_keeps_serving(
    engine, tiny_model_dir, limits, monkeypatch
):
    from core import engine as engine_module

    loads = []
    real_load = engine_module.load_model
    monkeypatch.setattr(
        engine_module, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k)
    )
    available = limits[("fp32", "int4")] + 1  # int4 fits, fp32 decode weights do not
    monkeypatch.setenv(footprint.MEMORY_ENV, str(available))
    client = create_app(make_config(decode_weights="fp32"), engine=engine).test_client()
    response = client.post("/load_model", json={"model_name": str(tiny_model_dir)})
    body = response.get_json()
    assert response.status_code == 507 and body["status"] == "error", body
    message = body["message"]
    assert f"({limits[('fp32', 'fp32')]} bytes" in message and f"({available} bytes)" in message
    assert "Settings that would fit" in message and "--decode-weights int4" in message
    assert "--decode-weights fp32 " not in message.split("would fit")[1]
    assert loads == []  # refused before the load
    status = client.get("/model_status").get_json()
    assert status["model_loaded"] and status["model_name"] == engine.model_name
    assert "Not enough memory" in status["last_load_error"]
    assert client.post("/generate", json={"prompt": "x", "max_length": 2}).status_code == 200
    # With a setting it named, the same model loads under the same limit.
    if compact_weights.available():
        fits = create_app(make_config(decode_weights="int4"), engine=engine).test_client()
        response = fits.post("/load_model", json={"model_name": str(tiny_model_dir)})
        assert response.status_code == 200, response.get_json()
        assert fits.get("/model_status").get_json()["decode_weights"] == "int4"


def test_nothing_fits_says_so(engine, tiny_model_dir, limits, monkeypatch):
    monkeypatch.setenv(footprint.MEMORY_ENV, str(min(limits.values()) - 1))
    client = create_app(make_config(), engine=engine).test_client()
    response = client.post("/load_model", json={"model_name": str(tiny_model_dir)})
    assert response.status_code == 507
    assert "no setting of this engine fits it" in response.get_json()["message"]

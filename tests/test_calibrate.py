import numpy as np
import pytest
import torch

from prmkit.calibrate import Calibration, TemperatureScaler, fit_calibration
from prmkit.metrics import auroc, ece


def test_temperature_recovers_a_known_scale():
    # soft labels y = sigmoid(z0) and logits 3 * z0: BCE is minimal exactly where
    # sigmoid(logits / T) = y, at T = 3
    z0 = np.linspace(-3, 3, 41)
    scaler = TemperatureScaler().fit(3 * z0, 1 / (1 + np.exp(-z0)))
    assert scaler.temperature_ == pytest.approx(3.0, abs=1e-4)
    assert scaler.transform(np.array([3.0]))[0] == pytest.approx(1.0, abs=1e-4)


def test_calibration_lowers_ece_of_an_over_confident_model_and_keeps_auroc():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    logits = 4 * true_logit  # four times too sure of itself
    scaler = TemperatureScaler().fit(logits, labels)
    before, after = ece(1 / (1 + np.exp(-logits)), labels), ece(scaler.predict_proba(logits),
                                                                 labels)
    assert 3.3 < scaler.temperature_ < 4.7
    assert after < 0.03 < 0.1 < before
    # monotone: rankings, so AUROC, do not move
    assert auroc(scaler.predict_proba(logits), labels) == auroc(logits, labels)


def test_fit_calibration_picks_the_first_error_threshold_on_calibrated_probabilities():
    # logits already calibrated (T stays ~1 on soft labels equal to the probabilities)
    logits = [np.array([2.0, -1.0]), np.array([2.0, 1.5]), np.array([-2.0, 0.5])]
    labels = [[1, 0], [1, 1], [0, None]]
    cal, report = fit_calibration(logits, labels, [1, -1, 0], ["a", "a", "a"])
    probs = [1 / (1 + np.exp(-l / cal.temperature)) for l in logits]
    # item 1 wants t in (p[1], p[0]] of the first; item 2 t <= min; item 3 t > p[0]
    for p, e in zip(probs, [1, -1, 0]):
        flagged = np.flatnonzero(p < cal.threshold)
        assert (flagged[0] if len(flagged) else -1) == e
    assert report["threshold_f1"] == 1.0 and report["threshold_splits"]["a"]["best_f1"] == 1.0
    assert report["ece_before"] >= 0 and report["calibration_steps"] == 5
    # five steps are too few to fit a temperature on: it stays 1, and the report says why
    assert cal.temperature == 1.0 and "fewer than 100" in report["temperature_skipped"]


def test_calibration_survives_save_and_load(tmp_path):
    from prmkit.model import PRMConfig, PRMHead
    from prmkit.scoring import score_features

    head = PRMHead(PRMConfig(input_dim=4, hidden_size=8, num_layers=1, num_heads=2)).eval()
    head.calibration = Calibration(temperature=2.5, threshold=0.3)
    head.save_pretrained(tmp_path)
    loaded = PRMHead.from_pretrained(tmp_path)
    assert loaded.calibration == Calibration(temperature=2.5, threshold=0.3)
    features = [np.ones((3, 4), np.float32)]
    with torch.no_grad():
        logits = head(torch.ones(1, 3, 4), torch.ones(1, 3, dtype=torch.bool))[0]
    # score applies the temperature before the sigmoid
    assert score_features(loaded, features)[0] == pytest.approx(
        torch.sigmoid(logits / 2.5).tolist(), abs=1e-6)


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"temperature": -1.0}])
def test_impossible_calibration_is_refused(bad):
    with pytest.raises(ValueError):
        Calibration(**bad)

"""The encoder's new head: its starting bias and the loss's positive weights, per family.
(Loading every family end to end: test_encoder_families.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig

from multilabel.training.encoder import classification_layer, compute_pos_weight, initialise_head_bias
from tests.support.tiny_model import tiny_config

# 200 rows, 3 labels on 50 %, 10 % and 1 % of them.
LABELS = np.zeros((200, 3), dtype=np.float32)
LABELS[:100, 0] = 1
LABELS[::10, 1] = 1
LABELS[[3, 77], 2] = 1


def tiny(config_class) -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_config(tiny_config(config_class, num_labels=3))


def loss_gradient_of_a_constant(bias: torch.Tensor, pos_weight: torch.Tensor | None) -> np.ndarray:
    """d(training loss)/d(bias) when every row gets the logits `bias`."""
    bias = bias.detach().clone().requires_grad_(True)
    targets = torch.from_numpy(LABELS)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        bias.expand_as(targets), targets, pos_weight=pos_weight
    )
    loss.backward()
    return bias.grad.numpy()


@pytest.mark.parametrize(
    ("config_class", "layer_name"),
    [(RobertaConfig, "classifier.out_proj"), (BertConfig, "classifier")],
)
@pytest.mark.parametrize("pos_weight_mode", ["none", "auto", "sqrt"])
def test_bias_starts_at_the_loss_minimising_constant(config_class, layer_name, pos_weight_mode) -> None:
    model = tiny(config_class)
    names = {module: name for name, module in model.named_modules()}
    layer = classification_layer(model)
    assert names[layer] == layer_name
    pos_weight = compute_pos_weight(LABELS, pos_weight_mode, cap=30.0)
    before = loss_gradient_of_a_constant(layer.bias, pos_weight)

    initialise_head_bias(model, LABELS, pos_weight)

    after = loss_gradient_of_a_constant(layer.bias, pos_weight)
    # transformers' zero bias is far from the optimum (0.5 against a 1 % label)...
    assert np.abs(before).max() > 0.1, "the untouched bias should be off the optimum"
    # ...the initialised one sits at it.
    np.testing.assert_allclose(after, 0.0, atol=1e-4, err_msg="the initialised bias is not the optimum")
    if pos_weight_mode == "none":
        np.testing.assert_allclose(torch.sigmoid(layer.bias).detach().numpy(), LABELS.mean(0), atol=0.005)


def test_pos_weight_modes() -> None:
    ratio = np.array([1.0, 9.0, 99.0])  # negatives / positives of the three labels
    assert compute_pos_weight(LABELS, "none", cap=30.0) is None
    np.testing.assert_allclose(compute_pos_weight(LABELS, "auto", cap=30.0).numpy(), [1.0, 9.0, 30.0])
    np.testing.assert_allclose(
        compute_pos_weight(LABELS, "sqrt", cap=30.0).numpy(), np.sqrt(ratio), rtol=1e-6
    )

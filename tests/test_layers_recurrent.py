"""Recurrent layers (issue 16): SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed against loops
written here in NumPy, eagerly and compiled; gradients against finite differences; Keras' weight
shapes and order; masks from Embedding(mask_zero=True) as Keras applies them."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit import constraints, layers
from layer_checks import check_forward, check_gradients, forward, weight_shapes


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def simple_rnn_step(p, x, states):
    h = np.tanh(x @ p["kernel"] + states[0] @ p["recurrent_kernel"] + p["bias"])
    return h, [h]


def lstm_step(p, x, states):
    h, c = states
    z = x @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"]
    i, f, g, o = np.split(z, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return h, [h, c]


def gru_step(p, x, states, reset_after=True):
    h = states[0]
    u = h.shape[-1]
    k, rk = p["kernel"], p["recurrent_kernel"]
    if reset_after:
        b_in, b_rec = p["bias"][0], p["bias"][1]
        xz, xr, xh = np.split(x @ k + b_in, 3, axis=-1)
        hz, hr, hh = np.split(h @ rk + b_rec, 3, axis=-1)
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        candidate = np.tanh(xh + r * hh)
    else:
        xz, xr, xh = np.split(x @ k + p["bias"], 3, axis=-1)
        z = sigmoid(xz + h @ rk[:, :u])
        r = sigmoid(xr + h @ rk[:, u:2 * u])
        candidate = np.tanh(xh + (r * h) @ rk[:, 2 * u:])
    out = z * h + (1 - z) * candidate
    return out, [out]


def reference_rnn(step, p, x, units, n_states, return_sequences=False, return_state=False,
                  go_backwards=False, mask=None, zero_output_for_mask=False):
    """Keras' backend.rnn semantics: masked steps keep the states and repeat the output."""
    n, steps, _ = x.shape
    states = [np.zeros((n, units)) for _ in range(n_states)]
    output = np.zeros((n, units))
    outputs = []
    order = range(steps)[::-1] if go_backwards else range(steps)
    for t in order:
        new_output, new_states = step(p, x[:, t], states)
        if mask is not None:
            keep = mask[:, t][:, None]
            new_states = [np.where(keep, a, b) for a, b in zip(new_states, states)]
            new_output = np.where(keep, new_output, 0 if zero_output_for_mask else output)
        output, states = new_output, new_states
        outputs.append(output)
    result = np.stack(outputs, axis=1) if return_sequences else output
    return [result, *states] if return_state else result


CELLS = {
    "SimpleRNN": (layers.SimpleRNN, simple_rnn_step, 1),
    "LSTM": (layers.LSTM, lstm_step, 2),
    "GRU": (layers.GRU, gru_step, 1),
}


def randomize_bias(layer, seed=7):
    """Keras initialises biases to zeros (LSTM's forget gate to ones): make them count."""
    if "bias" in layer.params:
        rng = np.random.default_rng(seed)
        bias = layer.params["bias"]
        layer.params["bias"] = (bias + rng.normal(size=bias.shape) * 0.3).astype(bias.dtype)


@settings(max_examples=4, deadline=None)
@given(cell=st.sampled_from(sorted(CELLS)), batch=st.integers(1, 3), steps=st.integers(1, 4),
       features=st.integers(1, 3), units=st.integers(1, 4), return_sequences=st.booleans(),
       go_backwards=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_recurrent_forward_matches_numpy_loop(cell, batch, steps, features, units,
                                              return_sequences, go_backwards, dtype):
    cls, step, n_states = CELLS[cell]
    layer = cls(units, return_sequences=return_sequences, return_state=True,
                go_backwards=go_backwards, dtype=dtype)
    x = np.random.default_rng(batch * 10 + steps).normal(size=(batch, steps, features))
    layer(x.astype(dtype))
    randomize_bias(layer)
    check_forward(layer, x, lambda p, x: reference_rnn(
        step, p, x, units, n_states, return_sequences, True, go_backwards), dtype)


def test_gru_reset_before_matmul():
    layer = layers.GRU(3, reset_after=False, return_sequences=True, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(2, 3, 2))
    layer(x)
    randomize_bias(layer)
    assert layer.params["bias"].shape == (9,)
    check_forward(layer, x, lambda p, x: reference_rnn(
        lambda p, x, s: gru_step(p, x, s, reset_after=False), p, x, 3, 1, True), np.float64)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_recurrent_gradients_match_finite_differences(cell):
    cls, _, _ = CELLS[cell]
    layer = cls(3, return_sequences=True, dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(2, 3, 2))
    layer(x)
    randomize_bias(layer)
    check_gradients(layer, x)


# ---------------------------------------------------------------- Keras' weights


@pytest.mark.parametrize("cls,expected", [
    (layers.SimpleRNN, [("kernel", (5, 4)), ("recurrent_kernel", (4, 4)), ("bias", (4,))]),
    (layers.LSTM, [("kernel", (5, 16)), ("recurrent_kernel", (4, 16)), ("bias", (16,))]),
    (layers.GRU, [("kernel", (5, 12)), ("recurrent_kernel", (4, 12)), ("bias", (2, 12))]),
])
def test_weight_shapes_order_and_initializers(cls, expected):
    layer = cls(4, seed=0)
    layer(np.zeros((2, 3, 5), np.float32))
    assert weight_shapes(layer) == expected
    assert [w.shape for w in layer.get_weights()] == [s for _, s in expected]
    recurrent = layer.params["recurrent_kernel"].astype(np.float64)
    # Keras' orthogonal initializer: the (units, gates * units) matrix has orthonormal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-5)
    bias = layer.params["bias"]
    if cls is layers.LSTM:  # unit_forget_bias: the forget gate's slice starts at one
        np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    else:
        assert not bias.any()
    limit = np.sqrt(6 / (5 + layer.params["kernel"].shape[1]))
    assert np.abs(layer.params["kernel"]).max() <= limit


def test_bidirectional_weights_and_merge_modes():
    x = np.random.default_rng(2).normal(size=(2, 3, 2))
    forward_layer = layers.LSTM(3, return_sequences=True, dtype=np.float64)
    layer = layers.Bidirectional(forward_layer, dtype=np.float64)
    layer(x)
    names = [n for n, _ in weight_shapes(layer)]
    assert [n.split("/")[0].split("_")[0] for n in names] == ["forward"] * 3 + ["backward"] * 3
    assert [n.split("/")[1] for n in names] == ["kernel", "recurrent_kernel", "bias"] * 2
    assert not np.array_equal(layer.params[names[0]], layer.params[names[3]])

    def reference(p, x):
        fw = {k.split("/")[1]: v for k, v in p.items() if k.startswith("forward")}
        bw = {k.split("/")[1]: v for k, v in p.items() if k.startswith("backward")}
        a = reference_rnn(lstm_step, fw, x, 3, 2, True)
        b = reference_rnn(lstm_step, bw, x, 3, 2, True, go_backwards=True)[:, ::-1]
        return np.concatenate([a, b], axis=-1)

    check_forward(layer, x, reference, np.float64)
    check_gradients(layer, x, entries=2)
    summed = layers.Bidirectional(layers.GRU(2), merge_mode="sum", dtype=np.float64)
    out = summed(x)
    assert out.shape == (2, 2)
    assert isinstance(layers.Bidirectional(layers.GRU(2), merge_mode=None)(x), list)


def test_time_distributed_dense():
    x = np.random.default_rng(3).normal(size=(2, 4, 3))
    layer = layers.TimeDistributed(layers.Dense(5, activation="tanh", dtype=np.float64),
                                   dtype=np.float64)
    layer(x)
    assert weight_shapes(layer) == [("kernel", (3, 5)), ("bias", (5,))]
    check_forward(layer, x, lambda p, x: np.tanh(x @ p["kernel"] + p["bias"]), np.float64)
    check_gradients(layer, x, entries=2)


# ---------------------------------------------------------------- masks


def masked_model(cell, return_sequences=False, **kwargs):
    layers.set_seed(0)
    ids = layers.Input((4,), dtype=np.int64)
    embedded = layers.Embedding(6, 3, mask_zero=True, dtype=np.float64)(ids)
    out = cell(2, return_sequences=return_sequences, dtype=np.float64, **kwargs)(embedded)
    return gj.Model(ids, out)


@pytest.mark.parametrize("cell", [layers.LSTM, layers.GRU])
def test_mask_zero_skips_padding_like_keras(cell):
    ids = np.array([[1, 2, 3, 0], [4, 0, 0, 0], [0, 5, 0, 2]])  # trailing and inner padding
    model = masked_model(cell, return_sequences=True)
    embedding, rnn = model.layers
    _, step, n_states = CELLS[cell.__name__]
    x = embedding.params["embeddings"][ids]
    expected = reference_rnn(step, rnn.params, x, 2, n_states, True, mask=ids != 0)
    np.testing.assert_allclose(model.predict(ids, jit=False), expected, rtol=1e-10)
    np.testing.assert_allclose(model.predict(ids), expected, rtol=1e-9, atol=1e-12)
    # a padded sequence gives the same last output as the unpadded one
    last = masked_model(cell).predict(ids)
    np.testing.assert_allclose(last[1], masked_model(cell).predict(np.array([[4, 0, 0, 0]]))[0])
    short = layers.Embedding(6, 3, dtype=np.float64)
    short.ensure_built((None, 1))
    short.params = dict(embedding.params)
    alone = reference_rnn(step, rnn.params, short.params["embeddings"][np.array([[4]])], 2,
                          n_states)
    np.testing.assert_allclose(last[1], alone[0], rtol=1e-9)


def test_mask_passes_through_dropout_and_reaches_pooling():
    ids = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    inputs = layers.Input((4,), dtype=np.int64)
    embedded = layers.Embedding(5, 3, mask_zero=True, dtype=np.float64)(inputs)
    pooled = layers.GlobalAveragePooling1D()(layers.Dropout(0.5)(embedded))
    model = gj.Model(inputs, pooled)
    table = model.layers[0].params["embeddings"]
    expected = np.stack([table[[1, 2]].mean(0), table[[3]].mean(0)])
    np.testing.assert_allclose(model.predict(ids), expected, rtol=1e-9)
    np.testing.assert_allclose(model.predict(ids, jit=False), expected, rtol=1e-12)


def test_masking_layer_and_bidirectional_zero_outputs():
    x = np.random.default_rng(4).normal(size=(2, 3, 2))
    x[0, 2] = 0.0  # a masked (all-zero) step
    masking = layers.Masking(0.0)
    rnn = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True, dtype=np.float64),
                               dtype=np.float64)
    out = rnn(masking(x))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out[0, 2], 0.0)  # Bidirectional zeroes masked outputs
    assert np.all(out[1] != 0)


# ---------------------------------------------------------------- in models


def test_lstm_model_trains_compiled_like_eager():
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 8, (16, 5))
    ids[::3, 3:] = 0
    labels = (ids[:, 0] > 4).astype(np.int64)

    def build():
        layers.set_seed(1)
        model = gj.Sequential([layers.Input((5,), dtype=np.int64),
                               layers.Embedding(8, 4, mask_zero=True),
                               layers.LSTM(3, dropout=0.1),
                               layers.Dense(2)])
        model.compile("adam", gj.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    compiled, eager = build(), build()
    h1 = compiled.fit(ids, labels, batch_size=8, epochs=2, shuffle=False, verbose=0, seed=0)
    h2 = eager.fit(ids, labels, batch_size=8, epochs=2, shuffle=False, verbose=0, seed=0,
                   jit=False)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-4)
    assert h1.history["loss"][-1] < h1.history["loss"][0]


def test_return_state_in_the_functional_api():
    inputs = layers.Input((3, 2))
    out, h, c = layers.LSTM(4, return_state=True)(inputs)
    model = gj.Model(inputs, [out, h, c])
    x = np.random.default_rng(6).normal(size=(2, 3, 2)).astype(np.float32)
    results = model.predict(x)
    assert [r.shape for r in results] == [(2, 4)] * 3
    np.testing.assert_array_equal(results[0], results[1])  # the output is the last h


def test_recurrent_errors():
    with pytest.raises(gj.GraphjitError, match="stateful"):
        layers.LSTM(2, stateful=True)
    with pytest.raises(gj.GraphjitError, match=r"\(batch, timesteps, features\)"):
        layers.GRU(2)(np.zeros((2, 3), np.float32))
    with pytest.raises(gj.GraphjitError, match="recurrent layer"):
        layers.Bidirectional(layers.Dense(2))


def test_regularizers_and_constraints_reach_fit():
    layers.set_seed(2)
    model = gj.Sequential([layers.Input((3, 2)),
                           layers.SimpleRNN(2, kernel_regularizer="l2",
                                            recurrent_constraint=constraints.NonNeg())])
    model.compile("sgd", "mse")
    rnn = model.layers[0]
    penalty = rnn.regularization_losses(rnn.params)
    np.testing.assert_allclose(penalty[0], 0.01 * np.sum(rnn.params["kernel"] ** 2), rtol=1e-6)
    x = np.random.default_rng(7).normal(size=(8, 3, 2)).astype(np.float32)
    model.fit(x, np.zeros((8, 2), np.float32), verbose=0, epochs=1)
    assert (model.layers[0].params["recurrent_kernel"] >= 0).all()


def test_forward_compiles_once_per_shape():
    layer = layers.LSTM(2)
    x = np.zeros((2, 3, 1), np.float32)
    layer(x)
    step = forward(layer)
    step(layer.params, layer.state, x)
    step(layer.params, layer.state, x + 1)
    assert step.cache_info()["misses"] == 1


# ---------------------------------------------------------------- initial_state


def reference_from(step, p, x, states, return_sequences=False):
    outputs = []
    for t in range(x.shape[1]):
        output, states = step(p, x[:, t], states)
        outputs.append(output)
    return [np.stack(outputs, 1) if return_sequences else output, *states]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_initial_state_starts_the_loop_from_the_given_states(cell):
    cls, step, n_states = CELLS[cell]
    rng = np.random.default_rng(11)
    layer = cls(3, return_sequences=True, return_state=True, dtype=np.float64)
    x = rng.normal(size=(2, 4, 2))
    states = [rng.normal(size=(2, 3)) for _ in range(n_states)]
    layer(x)
    randomize_bias(layer)
    expected = reference_from(step, layer.params, x, states, return_sequences=True)
    for results in (layer(x, initial_state=states), layer([x, *states])):  # Keras 2's form
        assert len(results) == 1 + n_states
        for got, want in zip(results, expected):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(gj.GraphjitError, match=f"takes {n_states} initial state"):
        layer(x, initial_state=[*states, states[0]])
    with pytest.raises(gj.GraphjitError, match=r"must have shape \(batch, units\)"):
        layer(x, initial_state=[s[:, :2] for s in states])

    def total(h0):
        out = layer(x, initial_state=[h0, *states[1:]])[0]
        return np.sum(out * np.linspace(-1, 1, out.size).reshape(out.shape))

    grad = gj.grad(total)(states[0])
    eps = 1e-6
    for index in [(0, 0), (1, 2)]:
        bump = np.zeros_like(states[0])
        bump[index] = eps
        numeric = (total(states[0] + bump) - total(states[0] - bump)) / (2 * eps)
        np.testing.assert_allclose(grad[index], numeric, rtol=1e-5, atol=1e-8)


def test_bidirectional_initial_state_is_forward_then_backward_states():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2, 3, 2))
    layer = layers.Bidirectional(layers.GRU(2, return_sequences=True, dtype=np.float64),
                                 merge_mode=None, dtype=np.float64)
    layer(x)
    forward_h, backward_h = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
    forward, backward = layer(x, initial_state=[forward_h, backward_h])
    params = {k.split("/", 1)[1]: v for k, v in layer.params.items() if k.startswith("forward")}
    expected = reference_from(gru_step, params, x, [forward_h], return_sequences=True)[0]
    np.testing.assert_allclose(forward, expected, rtol=1e-10)
    back_params = {k.split("/", 1)[1]: v for k, v in layer.params.items()
                   if k.startswith("backward")}
    reversed_out = reference_from(gru_step, back_params, x[:, ::-1], [backward_h], True)[0]
    np.testing.assert_allclose(backward, reversed_out[:, ::-1], rtol=1e-10)


def test_encoder_decoder_with_initial_state_trains_saves_and_loads(tmp_path):
    """Keras' seq2seq pattern: the encoder's final states start the decoder."""
    layers.set_seed(3)
    encoder_in = layers.Input((5, 3), name="encoder_in")
    decoder_in = layers.Input((4, 2), name="decoder_in")
    _, h, c = layers.LSTM(4, return_state=True, name="encoder")(encoder_in)
    decoded = layers.LSTM(4, return_sequences=True, name="decoder")(decoder_in,
                                                                   initial_state=[h, c])
    model = gj.Model([encoder_in, decoder_in], layers.Dense(2, name="head")(decoded))
    rng = np.random.default_rng(13)
    xs = [rng.normal(size=(6, 5, 3)).astype(np.float32),
          rng.normal(size=(6, 4, 2)).astype(np.float32)]
    y = rng.normal(size=(6, 4, 2)).astype(np.float32)
    model.compile(optimizer="adam", loss="mse")
    before = model.get_layer("encoder").get_weights()
    compiled = model.fit(xs, y, batch_size=6, epochs=2, verbose=0, shuffle=False)
    # the decoder's loss reaches the encoder through the states
    assert any(not np.array_equal(a, b) for a, b in
               zip(before, model.get_layer("encoder").get_weights()))
    path = tmp_path / "seq2seq.keras"
    model.save(path)
    loaded = gj.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))
    eager = gj.models.load_model(path)
    for m, jit in ((loaded, True), (eager, False)):
        m.fit(xs, y, batch_size=6, epochs=1, verbose=0, shuffle=False, jit=jit)
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), eager.predict(xs, verbose=0),
                               rtol=1e-4, atol=1e-6)
    assert compiled.history["loss"][1] < compiled.history["loss"][0]

"""Camera-image observations end to end: the spec keeps them uint8 and unscaled, the image
encoders are what the networks read, random shifts match a numpy reference and move all of a
row's images alike, and an image policy learns, checkpoints and acts on raw images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gcrl.algorithms import BC, CRL, GCIVL, HIQL, IQL, QRL, TD3BC
from gcrl.datasets import load
from gcrl.errors import ConfigError
from gcrl.models.encoders import ImageEncoder, image_encoder
from gcrl.models.factory import parameter_count
from gcrl.policy import load_policy
from gcrl.spec import InputSpec
from gcrl.training import TrajectoryDataModule
from gcrl.training.augment import ImageShift, random_shift

from .training_data import fit, image_goal_reaching, render_dot

torch.set_num_threads(1)
SIZE = 16


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_goal_reaching(tmp_path_factory.mktemp("img") / "img.hdf5", size=SIZE)


def module(path: Path, **options: object) -> TrajectoryDataModule:
    defaults: dict[str, object] = {"batch_size": 64, "relabel": "ogbench", "steps_per_epoch": 4}
    return TrajectoryDataModule(str(path), **{**defaults, **options})  # type: ignore[arg-type]


def test_image_states_stay_uint8_and_unscaled(images: Path) -> None:
    dm = module(images, normalize=True)
    spec = dm.spec
    assert spec.image_shape == (SIZE, SIZE, 3) and spec.goal_image
    assert spec.observation_dim == spec.goal_dim == SIZE * SIZE * 3
    assert spec.observation_scale is None and spec.goal_scale is None  # never standardised
    assert InputSpec.from_dict(spec.to_dict()) == spec
    batch = next(iter(dm.train_dataloader()))
    assert batch.observations.dtype == torch.uint8 and batch.goals["value"].dtype == torch.uint8
    raw = load(images).observations
    assert isinstance(raw, np.ndarray)
    rows = torch.from_numpy(raw.reshape(len(raw), -1))
    # Every row of the batch is a stored image, byte for byte.
    assert all(bool((rows == row).all(1).any()) for row in batch.observations[:8])
    # One image is a single observation, not a batch of 16 rows.
    assert spec.is_single(raw[0]) and spec.network_state(raw[0]).shape == (1, spec.observation_dim)


def test_an_image_among_other_state_keys_is_refused() -> None:
    from gcrl.datasets import Trajectories

    n = 4
    obs = {"pixels": np.zeros((n, 8, 8, 3), np.uint8), "state": np.zeros((n, 2), np.float32)}
    data = Trajectories(
        observations=obs,
        next_observations=obs,
        actions=np.zeros((n, 2), np.float32),
        rewards=np.zeros(n),
        terminals=np.zeros(n, bool),
        timeouts=np.eye(1, n, n - 1, dtype=bool)[0],
        episode_starts=np.array([0]),
    )
    with pytest.raises(ConfigError, match="observation_keys: pixels, state mix a camera image"):
        InputSpec.from_data(data, observation_keys=("pixels", "state"))


@pytest.mark.parametrize(("kind", "stacks"), [("impala", 2), ("impala_small", 1), ("conv", None)])
def test_encoders_scale_bytes_and_give_features(kind: str, stacks: int | None) -> None:
    encoder = image_encoder(kind, (64, 64, 3), 512)
    x = torch.randint(0, 256, (3, 64 * 64 * 3), dtype=torch.uint8)
    out = encoder(x)
    assert out.shape == (3, 512)
    torch.testing.assert_close(encoder(x.float()), out)  # bytes or floats in [0, 255]
    if stacks is not None:  # OGBench's layout: 16, 32, 32 channels; 64 -> 8 after 3 pools
        assert [s.conv.out_channels for s in encoder.trunk] == [16, 32, 32]
        assert all(len(s.blocks) == stacks for s in encoder.trunk)
        assert encoder.head.in_features == 32 * 8 * 8
    with pytest.raises(ConfigError, match="image_encoder: unknown 'resnet'"):
        image_encoder("resnet", (64, 64, 3), 512)


def reference_shift(image: np.ndarray, offset: np.ndarray, padding: int) -> np.ndarray:
    """An independent random crop: pad with edge values, then slice (OGBench's way)."""
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode="edge")
    y, x = offset
    return padded[y : y + image.shape[0], x : x + image.shape[1]]


def test_random_shift_matches_a_padded_crop() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)
    offsets = rng.integers(0, 7, (6, 2))
    offsets[0] = (3, 3)  # no shift
    shifted = random_shift(
        torch.from_numpy(images.reshape(6, -1)), (10, 12, 3), torch.from_numpy(offsets), 3
    ).numpy()
    assert shifted.dtype == np.uint8
    for i in range(6):
        expected = reference_shift(images[i], offsets[i], 3)
        np.testing.assert_array_equal(shifted[i].reshape(10, 12, 3), expected)
    np.testing.assert_array_equal(shifted[0], images[0].reshape(-1))


def test_a_shifted_batch_moves_each_rows_images_alike(images: Path) -> None:
    dm = module(images, image_shift_probability=1.0)
    raw = load(images)
    assert isinstance(raw.observations, np.ndarray)
    rng = np.random.default_rng(3)
    sampler = dm.sampler(raw, rng)
    drawn = sampler.sample(32, gather=True)
    shifts = dm.image_shift.draw(32, rng)  # type: ignore[union-attr]
    assert shifts is not None
    batch = dm.to_batch(raw, drawn, shifts=shifts)
    for i, row in enumerate(drawn["rows"][:8]):
        want = reference_shift(raw.observations[row], shifts[i], 3)
        np.testing.assert_array_equal(batch.observations[i].numpy().reshape(want.shape), want)
        want_next = reference_shift(raw.next_observations[row], shifts[i], 3)
        got_next = batch.next_observations[i].numpy().reshape(want.shape)
        np.testing.assert_array_equal(got_next, want_next)
        goal = np.asarray(drawn["value_goals"][i]).reshape(want.shape)
        got_goal = batch.goals["value"][i].numpy().reshape(want.shape)
        np.testing.assert_array_equal(got_goal, reference_shift(goal, shifts[i], 3))
    # Validation batches and probability 0 are never shifted; a state dataset refuses it.
    assert ImageShift(0.0).draw(32, rng) is None
    assert all(ImageShift(1.0).draw(4, rng) is not None for _ in range(5))
    dm.val_fraction = 0.2
    dm.setup()
    assert next(iter(dm.val_dataloader())).observations.dtype == torch.uint8


def test_shifts_on_state_data_are_refused(tmp_path: Path) -> None:
    from .training_data import goal_reaching

    path = goal_reaching(tmp_path / "g.hdf5", episodes=3, length=4)
    with pytest.raises(ConfigError, match=r"image_shift_probability: .* no camera images"):
        module(path, image_shift_probability=0.5)


def test_a_resumed_stream_shifts_as_the_uninterrupted_one(images: Path) -> None:
    dm = module(images, image_shift_probability=1.0)
    whole = [b.observations for b in dm.train_dataloader()]
    stream = dm.train_dataloader()
    batches = iter(stream)
    next(batches), next(batches)
    state = stream.state_dict()  # without a trainer: batch 1 is the next to train on
    again = dm.train_dataloader()
    again.load_state_dict(state)
    resumed = [b.observations for b in again]
    assert state["position"] == 1 and len(resumed) == 3
    assert all(torch.equal(a, b) for a, b in zip(resumed, whole[1:], strict=True))


@pytest.mark.parametrize("cls", [BC, GCIVL, IQL, HIQL, CRL, QRL, TD3BC])
def test_every_network_reads_the_encoders_features(images: Path, cls: type) -> None:
    dm = module(images)
    model = cls(
        spec=dm.spec, hidden_dims=[32], task_signal="goal", image_encoder="conv", image_features=24
    )
    assert isinstance(model.observation_encoder, ImageEncoder)
    assert model.goal_encoder is None  # shared by default
    assert model.observation_dim == model.goal_dim == 24
    dm.needs = model.data_needs
    batch = next(iter(dm.train_dataloader()))
    model.objective_value(model.all_losses(batch)).backward()
    grads = [p.grad for p in model.observation_encoder.parameters()]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    # No network but the encoder reads the 768 image bytes.
    assert not any(
        isinstance(m, torch.nn.Linear) and m.in_features >= SIZE * SIZE * 3
        for name, m in model.named_modules()
        if "encoder" not in name
    )


def test_a_goal_encoder_of_its_own(images: Path) -> None:
    dm = module(images)
    common = {"spec": dm.spec, "hidden_dims": [32], "task_signal": "goal", "image_encoder": "conv"}
    shared = BC(**common, image_features=16)  # type: ignore[arg-type]
    separate = BC(**common, image_features=16, share_goal_encoder=False)  # type: ignore[arg-type]
    assert isinstance(separate.goal_encoder, ImageEncoder)
    encoder_size = parameter_count(separate.goal_encoder)
    assert parameter_count(separate) == parameter_count(shared) + encoder_size
    batch = next(iter(dm.train_dataloader()))
    separate.objective_value(separate.all_losses(batch)).backward()
    assert all(p.grad is not None for p in separate.goal_encoder.parameters())


def test_an_image_policy_learns_and_acts_on_raw_images(images: Path, tmp_path: Path) -> None:
    dm = module(images, batch_size=128, image_shift_probability=0.5, image_shift_padding=1)
    model = BC(
        spec=dm.spec,
        hidden_dims=[64, 64],
        task_signal="goal",
        image_encoder="conv",
        image_features=64,
        learning_rate=1e-3,
    )
    untrained = BC(**{**model.config, "spec": dm.spec})
    probe = np.random.default_rng(7)
    starts, goals = probe.uniform(-0.8, 0.8, (64, 2)), probe.uniform(-0.8, 0.8, (64, 2))
    best = np.clip(goals - starts, -1, 1) / 2  # the expert's action

    def error(agent: BC) -> float:
        observations = torch.from_numpy(render_dot(starts, SIZE).reshape(64, -1))
        targets = torch.from_numpy(render_dot(goals, SIZE).reshape(64, -1))
        actions = agent.eval().act(observations, targets).numpy()
        return float(np.abs(actions - best).mean())

    before = error(untrained)
    trainer = fit(model, dm, 300)
    after = error(model)
    assert after < 0.6 * before, (before, after)
    trainer.save_checkpoint(tmp_path / "img.ckpt")
    policy = load_policy(tmp_path / "img.ckpt")
    one = policy(render_dot(starts[:1], SIZE)[0], goals=render_dot(goals[:1], SIZE)[0])
    assert one.shape == (2,)
    np.testing.assert_allclose(
        one,
        model.act(
            torch.from_numpy(render_dot(starts[:1], SIZE).reshape(1, -1)),
            torch.from_numpy(render_dot(goals[:1], SIZE).reshape(1, -1)),
        ).numpy()[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_an_image_file_is_relabeled_by_reference(images: Path, tmp_path: Path) -> None:
    from gcrl.relabel import relabel_file
    from gcrl.relabel.offline import read_goal_references

    out = tmp_path / "her.hdf5"
    summary = relabel_file(images, out, strategy="future", k=4, seed=0)
    source, relabeled = load(images), load(out)
    assert relabeled.num_transitions == source.num_transitions  # the rows, once
    np.testing.assert_array_equal(relabeled.observations, source.observations)  # type: ignore[arg-type]
    refs = read_goal_references(out, relabeled.num_transitions)
    assert refs is not None and len(refs) == 4 * source.num_transitions
    assert summary.stats.relabeled == len(refs)
    # Each copy: k per row; its goal a later state of the row's own episode, never beyond.
    np.testing.assert_array_equal(refs.rows, np.repeat(np.arange(source.num_transitions), 4))
    episode = np.searchsorted(source.episode_starts, np.arange(source.num_transitions), "right")
    goal_state = refs.goal_rows + refs.goal_next  # 0-based state index within the file
    assert (episode[refs.goal_rows] == episode[refs.rows]).all()
    assert (goal_state > refs.rows).all()  # future: after s
    ends = np.append(source.episode_starts[1:], source.num_transitions) - 1
    assert (
        refs.goal_rows[refs.goal_next] == ends[episode[refs.goal_rows[refs.goal_next]] - 1]
    ).all()
    # Rewards: 1 exactly where the goal is s' (by index), and the goal images are the rows'.
    np.testing.assert_array_equal(refs.terminals, goal_state == refs.rows + 1)
    np.testing.assert_array_equal(refs.rewards, refs.terminals.astype(np.float32))
    goals = refs.goals(relabeled)
    assert isinstance(source.observations, np.ndarray)
    assert isinstance(source.next_observations, np.ndarray)
    for i in np.flatnonzero(refs.terminals)[:5]:
        np.testing.assert_array_equal(goals[i], source.next_observations[refs.rows[i]])
    # Training draws the copies: auto mode reads the references, goals are their images.
    dm = module(out, relabel="auto")
    assert dm.references is not None and dm.relabel == "none" and dm.spec.goal_image
    batch = next(iter(dm.train_dataloader()))
    flat = goals.reshape(len(goals), -1)
    assert all(bool((torch.from_numpy(flat) == g).all(1).any()) for g in batch.goals["value"][:8])
    assert batch.rewards.sum() > 0  # some copies reach their goal
    fit(BC(spec=dm.spec, hidden_dims=[16], task_signal="goal", image_encoder="conv"), dm, 2)
    # Relabeling the relabeled file again draws new references; nothing compounds.
    again = tmp_path / "again.hdf5"
    relabel_file(out, again, strategy="final", k=2, seed=1)
    assert load(again).num_transitions == source.num_transitions
    twice = read_goal_references(again, source.num_transitions)
    assert twice is not None and len(twice) == 2 * source.num_transitions


def test_reference_relabeling_refuses_what_it_cannot_honour(images: Path, tmp_path: Path) -> None:
    from gcrl.relabel import relabel_file

    out = tmp_path / "x.hdf5"
    with pytest.raises(ConfigError, match="other episodes"):
        relabel_file(images, out, strategy="random", k=2)
    with pytest.raises(ConfigError, match="need the rows"):
        relabel_file(images, out, strategy="future", k=2, keep_original=False)
    assert not out.exists()
    relabel_file(images, out, strategy="future", k=2)
    with pytest.raises(ConfigError, match="val_fraction"):
        module(out, relabel="auto", val_fraction=0.2)


def test_stacked_frames_never_reach_back_across_an_episode_start(images: Path) -> None:
    from gcrl.datasets.frames import stack_frames

    data = load(images)
    stacked = stack_frames(data, 3)
    obs, nxt = data.observations, data.next_observations
    assert isinstance(obs, np.ndarray) and isinstance(nxt, np.ndarray)
    assert isinstance(stacked.observations, np.ndarray)
    assert isinstance(stacked.next_observations, np.ndarray)
    assert stacked.observations.shape == (data.num_transitions, SIZE, SIZE, 9)
    starts = set(data.episode_starts.tolist())
    for i in range(data.num_transitions):  # an independent walk back through each episode
        frames, row = [], i
        for _ in range(3):
            frames.insert(0, obs[row])
            row = row if row in starts else row - 1
        np.testing.assert_array_equal(stacked.observations[i], np.concatenate(frames, -1))
        # s' stack: the two frames before s' (row i - 1 clipped, row i), then s'.
        before = obs[i - 1] if i not in starts else obs[i]
        want = np.concatenate([before, obs[i], nxt[i]], -1)
        np.testing.assert_array_equal(stacked.next_observations[i], want)


def test_a_frame_history_repeats_the_first_frame_and_tiles_the_goal() -> None:
    from gcrl.datasets.frames import FrameHistory

    history = FrameHistory(3)
    frame = np.full((2, 2, 1), 7, np.uint8)
    goal = np.full((2, 2, 1), 9, np.uint8)
    first = history.reset({"observation": frame, "desired_goal": goal})
    assert first["observation"][0, 0].tolist() == [7, 7, 7]
    assert first["desired_goal"][0, 0].tolist() == [9, 9, 9]
    after = history.push({"observation": frame + 1, "desired_goal": goal})
    assert after["observation"][0, 0].tolist() == [7, 7, 8]
    assert history.reset(frame + 5)[0, 0].tolist() == [12, 12, 12]  # a new episode forgets
    same = {"pixels": frame}
    assert FrameHistory(1).reset(same) is same  # no stacking: untouched


def test_a_frame_stacking_policy_trains_and_acts_on_stacks(images: Path, tmp_path: Path) -> None:
    dm = module(images, frame_stack=2)
    assert dm.spec.image_shape == (SIZE, SIZE, 6) and dm.spec.frame_stack == 2
    assert InputSpec.from_dict(dm.spec.to_dict()).frame_stack == 2
    model = BC(spec=dm.spec, hidden_dims=[16], task_signal="goal", image_encoder="conv")
    trainer = fit(model, dm, 2)
    trainer.save_checkpoint(tmp_path / "stack.ckpt")
    policy = load_policy(tmp_path / "stack.ckpt")
    stack = np.zeros((SIZE, SIZE, 6), np.uint8)
    assert policy(stack, goals=stack).shape == (2,)
    with pytest.raises(ConfigError, match="memory_map"):
        module(images, frame_stack=2, memory_map=True)


def test_frame_stacking_state_data_is_refused(tmp_path: Path) -> None:
    from .training_data import goal_reaching

    path = goal_reaching(tmp_path / "g.hdf5", episodes=3, length=4)
    with pytest.raises(ConfigError, match="frame_stack: needs array observations"):
        module(path, frame_stack=2)


def test_images_round_trip_through_ogbench_npz_and_minari(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ogbench.utils import load_dataset

    from gcrl.datasets import write_ogbench
    from gcrl.datasets.minari_writer import save_minari

    source = load(images)
    npz = write_ogbench(source, tmp_path / "visual.npz")
    raw = load_dataset(str(npz), ob_dtype=np.uint8)  # OGBench's own reader, as for visual-*
    assert raw["observations"].dtype == np.uint8
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    minari = save_minari([source], tmp_path / "minari", "gcrl/visual-test-v0", {})
    for path in (npz, minari):
        back = load(path)
        assert isinstance(back.observations, np.ndarray)
        assert back.observations.dtype == np.uint8, path
        np.testing.assert_array_equal(back.observations, source.observations)  # lossless
        np.testing.assert_array_equal(back.next_observations, source.next_observations)
        assert module(path).spec.image_shape == (SIZE, SIZE, 3)


def test_conservative_sharing_scores_images_through_the_encoder(
    images: Path, tmp_path: Path
) -> None:
    import dataclasses

    from gcrl.datasets import Task, save

    data = load(images)
    task_ids = (np.arange(data.num_transitions) // 25 % 2).astype(np.int64)  # by episode
    rewards = np.random.default_rng(0).integers(0, 2, (data.num_transitions, 2))
    two = dataclasses.replace(
        data,
        task_ids=task_ids,
        tasks=(Task("a"), Task("b")),
        infos={"task_rewards": rewards.astype(np.float32)},
    )
    path = save(two, tmp_path / "two.hdf5")
    dm = module(path, relabel="none", task_sharing="conservative", conservative_refresh=2)
    model = IQL(spec=dm.spec, hidden_dims=[16], task_signal="onehot", image_encoder="conv")
    fit(model, dm, 6)
    scores = dm.task_scores_of(dm.train_data)
    assert scores.thresholds is not None and np.isfinite(scores.thresholds).all()

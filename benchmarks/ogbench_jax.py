"""OGBench's GCBC and GCIQL training steps in JAX, timed: the reference rows of
``benchmarks/train.py``, measured in the same run.

    python benchmarks/ogbench_jax.py --algorithm GCBC --obs-dim 4 --goal-dim 2 --action-dim 2

Needs ``jax``, ``flax`` and ``optax`` (not gcrl's dependencies: ``train.py --jax-python``
points at an interpreter that has them, e.g. a separate virtual environment). Prints one JSON
line: ``{"algorithm": ..., "steps_per_second": best, "rounds": [...], "jax": version}``.

The networks and losses follow OGBench's ``impls`` (``agents/gcbc.py``, ``agents/gciql.py``,
``utils/networks.py``) at their default configuration, written here from their description:

* MLPs of 3 x 512 (``--hidden-dims``) with flax's default GELU (tanh form), Xavier-uniform kernels;
* GCBC: a Gaussian actor with a constant unit standard deviation, loss = mean negative
  log-likelihood of the data's action;
* GCIQL: a value network and a twin critic (a ``vmap``-ed ensemble) with LayerNorm after each
  activation, a target critic, expectile 0.9, discount 0.99, the DDPG+BC actor (alpha 0.3,
  Q normalised by its mean absolute value), Polyak averaging with tau 0.005;
* one Adam (learning rate 3e-4) over all parameters, the whole update under one ``jax.jit``.

Batches are drawn beforehand (16, random normal, cycled) and are already JAX arrays, so the
rate is the model's cost alone: an upper bound on OGBench's own loop, which also samples
and transfers each batch.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

#: OGBench's default hidden widths (``--hidden-dims`` overrides them).
HIDDEN = (512, 512, 512)
PREDRAWN = 16


class MLP(nn.Module):
    """Dense -> GELU [-> LayerNorm] per hidden width, then a Dense output."""

    out_dim: int
    layer_norm: bool = False
    hidden: tuple[int, ...] = HIDDEN

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.xavier_uniform()
        for width in self.hidden:
            x = nn.gelu(nn.Dense(width, kernel_init=init)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class TwinCritic(nn.Module):
    """Two value MLPs with separate parameters, evaluated as one vmapped network."""

    hidden: tuple[int, ...] = HIDDEN

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=2,
        )
        return ensemble(1, True, self.hidden)(x)[..., 0]


def gaussian_log_prob(mean: jax.Array, actions: jax.Array) -> jax.Array:
    """Log-density of ``actions`` under N(mean, I), summed over action dimensions; ``[B]``."""
    return -0.5 * (((actions - mean) ** 2).sum(-1) + mean.shape[-1] * jnp.log(2 * jnp.pi))


def gcbc_step(dims: dict[str, int], hidden: tuple[int, ...]) -> tuple[Any, Any]:
    """(initial state, jitted update) of GCBC."""
    actor = MLP(dims["action"], hidden=hidden)
    params = actor.init(jax.random.PRNGKey(0), jnp.zeros((1, dims["obs"] + dims["goal"])))
    tx = optax.adam(3e-4)

    @jax.jit
    def update(state: Any, batch: dict[str, jax.Array]) -> tuple[Any, jax.Array]:
        params, opt_state = state

        def loss_fn(p: Any) -> jax.Array:
            mean = actor.apply(p, jnp.concatenate([batch["obs"], batch["actor_goal"]], -1))
            return -gaussian_log_prob(mean, batch["action"]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return (params, tx.init(params)), update


def gciql_step(dims: dict[str, int], hidden: tuple[int, ...]) -> tuple[Any, Any]:
    """(initial state, jitted update) of GCIQL with the DDPG+BC actor."""
    value = MLP(1, True, hidden)
    critic, actor = TwinCritic(hidden), MLP(dims["action"], hidden=hidden)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state_in = jnp.zeros((1, dims["obs"] + dims["goal"]))
    critic_in = jnp.zeros((1, dims["obs"] + dims["goal"] + dims["action"]))
    params = {
        "value": value.init(keys[0], state_in),
        "critic": critic.init(keys[1], critic_in),
        "actor": actor.init(keys[2], state_in),
    }
    target = params["critic"]
    tx = optax.adam(3e-4)

    def v(p: Any, obs: jax.Array, goal: jax.Array) -> jax.Array:
        return value.apply(p, jnp.concatenate([obs, goal], -1))[..., 0]

    def q(p: Any, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        return critic.apply(p, jnp.concatenate([obs, goal, action], -1))

    @jax.jit
    def update(state: Any, b: dict[str, jax.Array]) -> tuple[Any, jax.Array]:
        params, target, opt_state = state

        def loss_fn(g: Any) -> jax.Array:
            diff = q(target, b["obs"], b["value_goal"], b["action"]).min(0) - v(
                g["value"], b["obs"], b["value_goal"]
            )
            value_loss = (jnp.where(diff >= 0, 0.9, 0.1) * diff**2).mean()
            next_v = v(params["value"], b["next_obs"], b["value_goal"])
            td_target = b["reward"] + 0.99 * b["mask"] * next_v
            qs = q(g["critic"], b["obs"], b["value_goal"], b["action"])
            critic_loss = ((qs - td_target) ** 2).sum(0).mean()
            mean = actor.apply(g["actor"], jnp.concatenate([b["obs"], b["actor_goal"]], -1))
            q_pi = q(params["critic"], b["obs"], b["actor_goal"], jnp.clip(mean, -1, 1)).min(0)
            q_loss = -q_pi.mean() / jax.lax.stop_gradient(jnp.abs(q_pi).mean() + 1e-6)
            bc_loss = -0.3 * gaussian_log_prob(mean, b["action"]).mean()
            return value_loss + critic_loss + q_loss + bc_loss

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        target = jax.tree_util.tree_map(
            lambda p, t: 0.005 * p + 0.995 * t, params["critic"], target
        )
        return (params, target, opt_state), loss

    return (params, target, tx.init(params)), update


def batches(dims: dict[str, int], batch_size: int, seed: int = 0) -> list[dict[str, jax.Array]]:
    """:data:`PREDRAWN` random batches with every key the two updates read."""
    rng = np.random.default_rng(seed)
    shapes = {
        "obs": dims["obs"],
        "next_obs": dims["obs"],
        "actor_goal": dims["goal"],
        "value_goal": dims["goal"],
        "action": dims["action"],
    }

    def draw() -> dict[str, jax.Array]:
        out = {k: rng.standard_normal((batch_size, d), dtype=np.float32) for k, d in shapes.items()}
        out["reward"] = -np.ones(batch_size, np.float32)
        out["mask"] = np.ones(batch_size, np.float32)
        return {k: jnp.asarray(v) for k, v in out.items()}

    return [draw() for _ in range(PREDRAWN)]


def steps_per_second(
    algorithm: str,
    dims: dict[str, int],
    hidden: tuple[int, ...],
    batch_size: int,
    warmup: int,
    seconds: float,
    repeats: int,
) -> list[float]:
    """The rate of each of ``repeats`` rounds of updates timed for about ``seconds``, after
    ``warmup`` (with the compilation) untimed ones."""
    state, update = (gcbc_step if algorithm == "GCBC" else gciql_step)(dims, hidden)
    data = batches(dims, batch_size)
    loss = jnp.zeros(())
    for i in range(warmup):
        state, loss = update(state, data[i % PREDRAWN])
    loss.block_until_ready()
    rounds = []
    for _ in range(repeats):
        steps, start = 0, time.perf_counter()
        # Blocks of 10 updates between clock reads, so that JAX's asynchronous dispatch
        # overlaps Python with the computation as in a training loop.
        while (elapsed := time.perf_counter() - start) < seconds or steps < 10:
            for _ in range(10):
                state, loss = update(state, data[steps % PREDRAWN])
                steps += 1
            loss.block_until_ready()
        rounds.append(steps / elapsed)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", choices=("GCBC", "GCIQL"), required=True)
    parser.add_argument("--obs-dim", type=int, required=True)
    parser.add_argument("--goal-dim", type=int, required=True)
    parser.add_argument("--action-dim", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=list(HIDDEN))
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dims = {"obs": args.obs_dim, "goal": args.goal_dim, "action": args.action_dim}
    rounds = steps_per_second(
        args.algorithm,
        dims,
        tuple(args.hidden_dims),
        args.batch_size,
        args.warmup,
        args.seconds,
        args.repeats,
    )
    result = {
        "algorithm": args.algorithm,
        "steps_per_second": max(rounds),
        "rounds": rounds,
        "jax": jax.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

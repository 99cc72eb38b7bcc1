"""OGBench's training steps in JAX (GCBC, GCIQL, GCIVL, HIQL, QRL, CRL), timed: the reference
rows of ``benchmarks/train.py``, measured in the same run.

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
* GCIVL: a twin value with LayerNorm and its target, expectile 0.9 with the weight from the
  target networks' advantage, AWR actor (alpha 10, weights capped at 100);
* HIQL: GCIVL's value (expectile 0.7) over ``phi([s; g])`` (an MLP to 10 values, LayerNorm,
  length-normalised; the target copies it), a high-level actor of the subgoal representation
  and a low-level actor, both AWR (alpha 3);
* QRL: an IQE distance (``phi`` to 512 values, components of 8), the softplus-shaped
  distance to random goals, the one-step constraint through a learned ``log lambda``
  (eps 0.05), a latent dynamics MLP (both directions) and the DDPG+BC actor (alpha 0.003);
* CRL: twin bilinear critics ``phi(s, a) . psi(g) / sqrt(512)`` (LayerNorm) by binary NCE
  over the batch, the DDPG+BC actor on the lower ``log Q`` (alpha 0.1);
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


def twin(out_dim: int, hidden: tuple[int, ...], layer_norm: bool = True) -> nn.Module:
    """Two MLPs with separate parameters as one vmapped network: ``[2, B, out_dim]``."""
    ensemble = nn.vmap(
        MLP,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=2,
    )
    return ensemble(out_dim, layer_norm, hidden)


def expectile_weight(adv: jax.Array, expectile: float) -> jax.Array:
    return jnp.where(adv >= 0, expectile, 1 - expectile)


def awr(adv: jax.Array, alpha: float) -> jax.Array:
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(adv * alpha), 100.0))


def polyak(params: Any, target: Any) -> Any:
    return jax.tree_util.tree_map(lambda p, t: 0.005 * p + 0.995 * t, params, target)


def jitted_update(loss_fn: Any, params: Any, target_key: str | None = None) -> tuple[Any, Any]:
    """(initial state, jitted update) for ``loss_fn(params, batch, target) -> loss`` under
    Adam (3e-4); with ``target_key``, ``target`` is a Polyak-averaged (tau 0.005) copy of
    ``params[target_key]``, updated after each step, else None."""
    tx = optax.adam(3e-4)

    @jax.jit
    def update(state: Any, b: dict[str, jax.Array]) -> tuple[Any, jax.Array]:
        params, target, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, b, target)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if target_key is not None:
            target = polyak(params[target_key], target)
        return (params, target, opt_state), loss

    target = None if target_key is None else params[target_key]
    return (params, target, tx.init(params)), update


def ivl_value_loss(
    v: Any, params: Any, target: Any, b: dict[str, jax.Array], expectile: float
) -> jax.Array:
    """GCIVL's (and HIQL's) value loss for the twin ``v(params, obs, goal) -> [2, B]``: each
    twin's expectile regression towards its own target twin's ``r + 0.99 mask V(s', g)``, the
    side from the target networks' advantage (the lower twin at ``s'``, the mean at ``s``)."""
    next_t = v(target, b["next_obs"], b["value_goal"])
    current_t = v(target, b["obs"], b["value_goal"]).mean(0)
    adv = b["reward"] + 0.99 * b["mask"] * next_t.min(0) - current_t
    diff = b["reward"] + 0.99 * b["mask"] * next_t - v(params, b["obs"], b["value_goal"])
    return (expectile_weight(adv, expectile) * diff**2).mean(-1).sum()


def gcivl_step(dims: dict[str, int], hidden: tuple[int, ...]) -> tuple[Any, Any]:
    """(initial state, jitted update) of GCIVL."""
    value, actor = twin(1, hidden), MLP(dims["action"], hidden=hidden)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state_in = jnp.zeros((1, dims["obs"] + dims["goal"]))
    params = {"value": value.init(keys[0], state_in), "actor": actor.init(keys[1], state_in)}

    def v(p: Any, obs: jax.Array, goal: jax.Array) -> jax.Array:
        return value.apply(p, jnp.concatenate([obs, goal], -1))[..., 0]

    def loss_fn(g: Any, b: dict[str, jax.Array], target: Any) -> jax.Array:
        value_loss = ivl_value_loss(v, g["value"], target, b, 0.9)
        cur = jax.lax.stop_gradient(g["value"])
        a = v(cur, b["next_obs"], b["actor_goal"]).mean(0) - v(cur, b["obs"], b["actor_goal"]).mean(
            0
        )
        mean = actor.apply(g["actor"], jnp.concatenate([b["obs"], b["actor_goal"]], -1))
        return value_loss - (awr(a, 10.0) * gaussian_log_prob(mean, b["action"])).mean()

    return jitted_update(loss_fn, params, "value")


def hiql_step(dims: dict[str, int], hidden: tuple[int, ...], rep_dim: int = 10) -> tuple[Any, Any]:
    """(initial state, jitted update) of HIQL."""
    rep, value = MLP(rep_dim, True, hidden), twin(1, hidden)
    high, low = MLP(rep_dim, hidden=hidden), MLP(dims["action"], hidden=hidden)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    obs_goal = jnp.zeros((1, dims["obs"] + dims["goal"]))
    obs_rep = jnp.zeros((1, dims["obs"] + rep_dim))
    params = {
        "value": {"rep": rep.init(keys[0], obs_goal), "v": value.init(keys[1], obs_rep)},
        "high": high.init(keys[2], obs_goal),
        "low": low.init(keys[3], obs_rep),
    }

    def phi(p: Any, obs: jax.Array, goal: jax.Array) -> jax.Array:
        z = rep.apply(p["rep"], jnp.concatenate([obs, goal], -1))
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True) * jnp.sqrt(rep_dim)

    def v(p: Any, obs: jax.Array, goal: jax.Array) -> jax.Array:
        return value.apply(p["v"], jnp.concatenate([obs, phi(p, obs, goal)], -1))[..., 0]

    def loss_fn(g: Any, b: dict[str, jax.Array], target: Any) -> jax.Array:
        value_loss = ivl_value_loss(v, g["value"], target, b, 0.7)
        cur = jax.lax.stop_gradient(g["value"])
        w = b["subgoal"]
        low_adv = v(cur, b["next_obs"], w).mean(0) - v(cur, b["obs"], w).mean(0)
        low_mean = low.apply(g["low"], jnp.concatenate([b["obs"], phi(cur, b["obs"], w)], -1))
        low_loss = -(awr(low_adv, 3.0) * gaussian_log_prob(low_mean, b["action"])).mean()
        goal = b["actor_goal"]
        high_adv = v(cur, b["high_target_obs"], goal).mean(0) - v(cur, b["obs"], goal).mean(0)
        high_mean = high.apply(g["high"], jnp.concatenate([b["obs"], goal], -1))
        target_rep = phi(cur, b["obs"], b["high_target"])
        high_loss = -(awr(high_adv, 3.0) * gaussian_log_prob(high_mean, target_rep)).mean()
        return value_loss + low_loss + high_loss

    return jitted_update(loss_fn, params, "value")


def iqe(x: jax.Array, y: jax.Array, mix: jax.Array, component: int = 8) -> jax.Array:
    """The interval quasimetric from latent ``x`` to ``y``: per component, the length of the
    union of the intervals ``[x_i, max(x_i, y_i)]``; ``alpha`` mean + ``1 - alpha`` max."""
    starts = x.reshape(*x.shape[:-1], -1, component)
    ends = jnp.maximum(starts, y.reshape(*y.shape[:-1], -1, component))
    order = jnp.argsort(starts, axis=-1)
    starts = jnp.take_along_axis(starts, order, -1)
    ends = jnp.take_along_axis(ends, order, -1)
    reached = jax.lax.cummax(ends, axis=ends.ndim - 1)
    before = jnp.concatenate([jnp.full_like(reached[..., :1], -jnp.inf), reached[..., :-1]], -1)
    lengths = jnp.maximum(ends - jnp.maximum(starts, before), 0).sum(-1)
    alpha = jax.nn.sigmoid(mix)
    return alpha * lengths.mean(-1) + (1 - alpha) * lengths.max(-1)


def qrl_step(dims: dict[str, int], hidden: tuple[int, ...], latent: int = 512) -> tuple[Any, Any]:
    """(initial state, jitted update) of QRL with the DDPG+BC actor."""
    phi, dynamics = MLP(latent, True, hidden), MLP(latent, True, hidden)
    actor = MLP(dims["action"], hidden=hidden)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {
        "phi": phi.init(keys[0], jnp.zeros((1, dims["obs"]))),
        "mix": jnp.zeros(()),
        "log_lam": jnp.zeros(()),
        "dynamics": dynamics.init(keys[1], jnp.zeros((1, latent + dims["action"]))),
        "actor": actor.init(keys[2], jnp.zeros((1, dims["obs"] + dims["goal"]))),
    }

    def loss_fn(g: Any, b: dict[str, jax.Array], target: None) -> jax.Array:
        # Goals are states (equal widths here), as QRL's one encoder needs.
        zs, zn = phi.apply(g["phi"], b["obs"]), phi.apply(g["phi"], b["next_obs"])
        d_neg = iqe(zs, phi.apply(g["phi"], b["value_goal"]), g["mix"])
        d_pos = iqe(zs, zn, g["mix"])
        lam = jnp.exp(g["log_lam"])
        pos_loss = (jax.nn.relu(d_pos - 1) ** 2).mean()
        value_loss = (100 * jax.nn.softplus(5 - d_neg / 100)).mean()
        value_loss += pos_loss * jax.lax.stop_gradient(lam)
        lam_loss = lam * (0.05 - jax.lax.stop_gradient(pos_loss))
        pred = zs + dynamics.apply(g["dynamics"], jnp.concatenate([zs, b["action"]], -1))
        dyn_loss = (iqe(zn, pred, g["mix"]) + iqe(pred, zn, g["mix"])).mean() / 2
        frozen = jax.lax.stop_gradient(g)
        mean = actor.apply(g["actor"], jnp.concatenate([b["obs"], b["actor_goal"]], -1))
        z = phi.apply(frozen["phi"], b["obs"])
        moved = z + dynamics.apply(
            frozen["dynamics"], jnp.concatenate([z, jnp.clip(mean, -1, 1)], -1)
        )
        q = -iqe(moved, phi.apply(frozen["phi"], b["actor_goal"]), frozen["mix"])
        q_loss = -q.mean() / jax.lax.stop_gradient(jnp.abs(q).mean() + 1e-6)
        bc_loss = -0.003 * gaussian_log_prob(mean, b["action"]).mean()
        return value_loss + lam_loss + dyn_loss + q_loss + bc_loss

    return jitted_update(loss_fn, params)


def crl_step(dims: dict[str, int], hidden: tuple[int, ...], latent: int = 512) -> tuple[Any, Any]:
    """(initial state, jitted update) of CRL with the DDPG+BC actor."""
    phi, psi, actor = twin(latent, hidden), twin(latent, hidden), MLP(dims["action"], hidden=hidden)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {
        "phi": phi.init(keys[0], jnp.zeros((1, dims["obs"] + dims["action"]))),
        "psi": psi.init(keys[1], jnp.zeros((1, dims["goal"]))),
        "actor": actor.init(keys[2], jnp.zeros((1, dims["obs"] + dims["goal"]))),
    }
    scale = 1 / np.sqrt(latent)

    def loss_fn(g: Any, b: dict[str, jax.Array], target: None) -> jax.Array:
        zs = phi.apply(g["phi"], jnp.concatenate([b["obs"], b["action"]], -1))
        zg = psi.apply(g["psi"], b["value_goal"])
        logits = jnp.einsum("eik,ejk->eij", zs, zg) * scale
        eye = jnp.eye(logits.shape[-1])
        critic_loss = optax.sigmoid_binary_cross_entropy(logits, eye).mean()
        frozen = jax.lax.stop_gradient(g)
        mean = actor.apply(g["actor"], jnp.concatenate([b["obs"], b["actor_goal"]], -1))
        za = phi.apply(frozen["phi"], jnp.concatenate([b["obs"], jnp.clip(mean, -1, 1)], -1))
        log_q = (za * psi.apply(frozen["psi"], b["actor_goal"])).sum(-1) * scale
        q = jnp.maximum(log_q, np.log(1e-6)).min(0)
        q_loss = -q.mean() / jax.lax.stop_gradient(jnp.abs(q).mean() + 1e-6)
        return critic_loss + q_loss - 0.1 * gaussian_log_prob(mean, b["action"]).mean()

    return jitted_update(loss_fn, params)


#: Algorithm name -> its ``(initial state, jitted update)`` builder.
STEPS = {
    "GCBC": gcbc_step,
    "GCIQL": gciql_step,
    "GCIVL": gcivl_step,
    "HIQL": hiql_step,
    "QRL": qrl_step,
    "CRL": crl_step,
}


def batches(dims: dict[str, int], batch_size: int, seed: int = 0) -> list[dict[str, jax.Array]]:
    """:data:`PREDRAWN` random batches with every key the updates read."""
    rng = np.random.default_rng(seed)
    shapes = {
        "obs": dims["obs"],
        "next_obs": dims["obs"],
        "actor_goal": dims["goal"],
        "value_goal": dims["goal"],
        "subgoal": dims["goal"],
        "high_target": dims["goal"],
        "high_target_obs": dims["obs"],
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
    state, update = STEPS[algorithm](dims, hidden)
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
    parser.add_argument("--algorithm", choices=tuple(STEPS), required=True)
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

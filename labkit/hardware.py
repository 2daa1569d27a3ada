"""What the machine is, and how each model family should run on it.

`HardwareProfile.detect()` reads the machine (NVIDIA through pynvml, then torch for CUDA/MPS,
else CPU; the probes are in `labkit.probes`) and never raises on a machine without a driver.
`HardwareProfile.simulated()` builds a profile for any tier without the hardware, for tests and for planning.

`choose(family, profile)` picks a `MemoryStrategy` from the table in `strategies.toml`, and
`degrade(strategy)` returns the next cheaper one, raising `OutOfMemory` with advice when
nothing cheaper is left. The table is data: a researcher extends it without touching code.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from labkit.errors import ConfigError, InvalidParameter, OutOfMemory, UnknownFamily
from labkit.probes import Platform, detect_platform, nvml_gpu, ram_gb, torch_gpu

Device = Literal["cuda", "mps", "cpu"]

#: VRAM tiers in GB, cheapest first. A tier covers every card from its value up to the next one.
TIERS: tuple[str, ...] = ("cpu", "4", "6", "8", "12", "16", "24", "40")

# Cards are sold in decimal GB but report binary MiB (a "24 GB" RTX 4090 reports 23.99 GiB);
# half a GiB of tolerance puts each card in the tier it is sold as, without promoting an
# 11 GB card to the 12 GB tier.
_TIER_TOLERANCE_GB = 0.5

OFFLOAD_MODES = ("none", "model", "group", "sequential")
DTYPES = ("float32", "float16", "bfloat16")
#: torch.compile modes a rung may name ("": torch's default mode).
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: A plan's `speed`: "default" starts where the tier says; "max" starts on the family's `gpu-fast` rung when it fits.
SPEEDS = ("default", "max")
FAST_RUNG = "gpu-fast"


def tier_for(vram_gb: float | None) -> str:
    """The tier name for a card with `vram_gb` of total memory; "cpu" for `None`."""
    if vram_gb is None:
        return "cpu"
    if vram_gb <= 0:
        raise InvalidParameter(
            f"VRAM must be positive, got {vram_gb!r} GB.", value=vram_gb, fix="pass the card's total memory in GB."
        )
    chosen = "4"
    for name in TIERS[1:]:
        if vram_gb + _TIER_TOLERANCE_GB >= float(name):
            chosen = name
    return chosen


@dataclass(frozen=True)
class HardwareProfile:
    """The machine a job runs on.

    Attributes:
        device: "cuda", "mps" or "cpu" — where tensors go.
        gpu_name: the GPU's name, or None on CPU.
        vram_total_gb / vram_free_gb: the GPU's memory (GiB), None without a GPU.
        compute_capability: CUDA (major, minor), None elsewhere.
        bf16: whether bfloat16 runs natively (Ampere or newer).
        gpu_count: NVIDIA GPUs this process may use (those CUDA_VISIBLE_DEVICES lists); labkit renders on the first.
        ram_total_gb / ram_free_gb: system memory (GiB).
        cpu_count: logical CPU cores.
        platform: "local", "colab" or "kaggle".
        driver: NVIDIA driver version when known.
        is_simulated: True for profiles built by `simulated()`.
        notes: what detection tried and why it settled where it did.
    """

    device: Device
    gpu_name: str | None = None
    vram_total_gb: float | None = None
    vram_free_gb: float | None = None
    compute_capability: tuple[int, int] | None = None
    bf16: bool = False
    gpu_count: int = 0
    ram_total_gb: float = 0.0
    ram_free_gb: float = 0.0
    cpu_count: int = 1
    platform: Platform = "local"
    driver: str | None = None
    is_simulated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tier(self) -> str:
        """The VRAM tier this profile falls in ("cpu", "4", "6", … "40")."""
        if self.device == "cpu":
            return "cpu"
        return tier_for(self.vram_total_gb)

    @property
    def training_precision(self) -> str:
        """The mixed precision training runs best in here: "bf16" (CUDA, Ampere or newer), "fp16"
        (older CUDA cards: T4, P100, V100), "no" (CPU, MPS). What `TrainConfig.mixed_precision` takes."""
        if self.device != "cuda":
            return "no"
        return "bf16" if self.bf16 else "fp16"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tier"] = self.tier
        d["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        d["notes"] = list(self.notes)
        return d

    def tags(self) -> dict[str, str]:
        """The profile as flat MLflow tags (`hardware.*`)."""
        return {f"hardware.{k}": "" if v is None else str(v) for k, v in self.to_dict().items() if k != "notes"}

    def summary(self) -> str:
        """One line a person reads: 'NVIDIA RTX 4090, 24.0 GB (tier 24), local'."""
        if self.device == "cpu":
            head = f"CPU only, {self.cpu_count} cores"
        else:
            vram = f"{self.vram_total_gb:.1f} GB" if self.vram_total_gb is not None else "unknown VRAM"
            head = f"{self.gpu_name or self.device}, {vram} (tier {self.tier})"
        sim = ", simulated" if self.is_simulated else ""
        return f"{head}, {self.ram_total_gb:.1f} GB RAM, {self.platform}{sim}"

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def simulated(
        cls,
        vram_gb: float | None = 8,
        *,
        device: Device | None = None,
        gpu_name: str | None = None,
        bf16: bool | None = None,
        ram_gb: float = 32.0,
        platform: Platform = "local",
        free_gb: float | None = None,
    ) -> HardwareProfile:
        """A profile for a machine that is not here: `vram_gb=None` (or device="cpu") is CPU only. `free_gb`: the
        VRAM free now (default: all of it), for a card other processes share."""
        if device is None:
            device = "cpu" if vram_gb is None else "cuda"
        if device == "cpu":
            return cls(device="cpu", ram_total_gb=ram_gb, ram_free_gb=ram_gb, cpu_count=os.cpu_count() or 1,
                       platform=platform, is_simulated=True, notes=("simulated CPU-only machine",))
        if vram_gb is None or vram_gb <= 0:
            raise InvalidParameter(
                f"A simulated {device} profile needs a positive vram_gb, got {vram_gb!r}.",
                value=vram_gb, fix="pass vram_gb=8 (or the card's memory), or device='cpu'.",
            )
        return cls(
            device=device,
            gpu_name=gpu_name or f"simulated {vram_gb:g} GB GPU",
            vram_total_gb=float(vram_gb),
            vram_free_gb=float(vram_gb if free_gb is None else min(free_gb, vram_gb)),
            compute_capability=(8, 6) if device == "cuda" else None,
            bf16=True if bf16 is None else bf16,
            gpu_count=1 if device == "cuda" else 0,
            ram_total_gb=ram_gb,
            ram_free_gb=ram_gb,
            cpu_count=os.cpu_count() or 1,
            platform=platform,
            is_simulated=True,
            notes=(f"simulated {device} with {vram_gb:g} GB" + ("" if free_gb is None else f", {free_gb:g} GB free"),),
        )

    def with_free_vram(self, free_gb: float | None) -> HardwareProfile:
        """This profile with the VRAM free now (what `choose` starts from on a card other processes share)."""
        if free_gb is None or self.device == "cpu":
            return self
        return dataclasses.replace(self, vram_free_gb=round(float(free_gb), 2))

    @classmethod
    def detect(cls) -> HardwareProfile:
        """Read this machine. Never raises: without a driver or torch it reports a CPU profile.

        Steps: 1. NVIDIA through pynvml (name, VRAM, compute capability, driver);
        2. if that found nothing, torch (CUDA, then Apple MPS) when torch is installed;
        3. otherwise CPU. System RAM and the platform (Colab, Kaggle, local) come from the OS.
        """
        notes: list[str] = []
        ram_total, ram_free = ram_gb()
        base = dict(ram_total_gb=ram_total, ram_free_gb=ram_free, cpu_count=os.cpu_count() or 1,
                    platform=detect_platform())

        gpu = nvml_gpu(notes)
        if gpu is None:
            gpu = torch_gpu(notes)
        if gpu is None:
            notes.append("no GPU found: running on CPU")
            return cls(device="cpu", notes=tuple(notes), **base)
        return cls(notes=tuple(notes), **gpu, **base)


# -- memory strategies ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryStrategy:
    """How one model family runs on one machine: every speed or memory trick is a named field.

    `rung` is the strategy's place on its family's ladder (0 = fastest); `degrade()` moves one
    rung down on the same device. `device` is "gpu" or "cpu" as in the table; the loader maps
    "gpu" to the profile's CUDA or MPS device.
    """

    family: str
    name: str
    tier: str
    rung: int
    device: Literal["gpu", "cpu"]
    dtype: str
    offload: str
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_slicing: bool = False
    forward_chunking: bool = False
    decode_chunk_size: int = 0
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: bool = False
    compile_mode: str = ""
    compile_vae: bool = False
    est_peak_vram_gb: float | None = None
    overrides: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def steps(self) -> list[str]:
        """The named steps this strategy applies, in the order a loader applies them."""
        out = [f"dtype={self.dtype}", f"offload={self.offload}"]
        for flag in ("vae_tiling", "vae_slicing", "attention_slicing", "forward_chunking", "fuse_qkv",
                     "channels_last", "compile", "compile_vae"):
            if getattr(self, flag):
                out.append(f"{flag}={self.compile_mode}" if flag == "compile" and self.compile_mode else flag)
        if self.decode_chunk_size:
            out.append(f"decode_chunk_size={self.decode_chunk_size}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = list(self.overrides)
        d["notes"] = list(self.notes)
        return d

    def tags(self) -> dict[str, str]:
        """The strategy as flat MLflow tags (`strategy.*`)."""
        return {f"strategy.{k}": str(v) for k, v in self.to_dict().items()}


_RUNG_FIELDS = {f.name for f in dataclasses.fields(MemoryStrategy)} - {"family", "tier", "rung", "overrides", "notes"}


@dataclass(frozen=True)
class StrategyTable:
    """The parsed `strategies.toml`: per family, a ladder of rungs and each tier's starting rung."""

    families: dict[str, dict[str, Any]]
    source: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> StrategyTable:
        """Read and check a strategy table; the one shipped with labkit when `path` is None."""
        if path is None:
            text = resources.files("labkit").joinpath("strategies.toml").read_text(encoding="utf-8")
            source = "labkit/strategies.toml"
        else:
            path = Path(path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"Cannot read strategy table {str(path)!r}: {e}.", value=str(path),
                                  fix="pass the path of an existing TOML file.") from e
            source = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"Strategy table {source} is not valid TOML: {e}.", value=source,
                              fix="fix the TOML syntax at the position shown.") from e
        table = cls(families=data.get("families", {}), source=source)
        table.check()
        return table

    def check(self) -> None:
        """Raise ConfigError naming the first family, rung or tier that is inconsistent."""
        if not self.families:
            raise ConfigError(f"{self.source} defines no [families.*].", value=self.source,
                              fix="add at least one family with a ladder and tiers.")
        for fam, spec in self.families.items():
            where = f"{self.source} [families.{fam}]"
            ladder = spec.get("ladder") or []
            names = [r.get("name") for r in ladder]
            if not ladder or len(set(names)) != len(names) or None in names:
                raise ConfigError(f"{where}: the ladder needs rungs with unique names, got {names!r}.",
                                  value=names, fix="give every [[ladder]] rung a unique `name`.")
            for r in ladder:
                unknown = set(r) - _RUNG_FIELDS
                if unknown:
                    raise ConfigError(f"{where} rung {r['name']!r} has unknown keys {sorted(unknown)}.",
                                      value=sorted(unknown), fix=f"use only {sorted(_RUNG_FIELDS)}.")
                if r.get("device") not in ("gpu", "cpu"):
                    raise ConfigError(f"{where} rung {r['name']!r}: device {r.get('device')!r}.",
                                      value=r.get("device"), fix='set device = "gpu" or "cpu".')
                if r.get("dtype") not in DTYPES:
                    raise ConfigError(f"{where} rung {r['name']!r}: dtype {r.get('dtype')!r}.",
                                      value=r.get("dtype"), fix=f"use one of {DTYPES}.")
                if r.get("offload") not in OFFLOAD_MODES:
                    raise ConfigError(f"{where} rung {r['name']!r}: offload {r.get('offload')!r}.",
                                      value=r.get("offload"), fix=f"use one of {OFFLOAD_MODES}.")
                if r.get("compile_mode", "") not in COMPILE_MODES:
                    raise ConfigError(f"{where} rung {r['name']!r}: compile_mode {r.get('compile_mode')!r}.",
                                      value=r.get("compile_mode"), fix=f"use one of {COMPILE_MODES}.")
            tiers = spec.get("tiers") or {}
            missing = [t for t in TIERS if t not in tiers]
            if missing:
                raise ConfigError(f"{where}: no starting rung for tier(s) {missing}.", value=missing,
                                  fix="map every tier in [families.NAME.tiers] to a rung name.")
            for t, rung in tiers.items():
                if rung not in names:
                    raise ConfigError(f"{where}: tier {t!r} starts at unknown rung {rung!r}.", value=rung,
                                      fix=f"use one of {names}.")
                want = "cpu" if t == "cpu" else "gpu"
                got = ladder[names.index(rung)]["device"]
                if got != want:
                    raise ConfigError(f"{where}: tier {t!r} starts at {rung!r}, a {got} rung.", value=rung,
                                      fix=f"start tier {t!r} on a {want} rung.")
                if rung == FAST_RUNG or ladder[names.index(rung)].get("compile"):
                    raise ConfigError(f"{where}: tier {t!r} starts at {rung!r}, which compiles: speed is opt-in.",
                                      value=rung, fix=f"start tier {t!r} on an eager rung; plans reach {FAST_RUNG!r} "
                                                      'with speed="max".')

    def strategy(self, family: str, rung: int, tier: str) -> MemoryStrategy:
        spec = self.families[family]["ladder"][rung]
        return MemoryStrategy(family=family, tier=tier, rung=rung, **spec)

    def family(self, family: str) -> dict[str, Any]:
        try:
            return self.families[family]
        except KeyError:
            raise UnknownFamily(
                f"No memory strategies for model family {family!r}.", value=family,
                fix=f"use one of {sorted(self.families)}, or add [families.{family}] to strategies.toml.",
            ) from None


@cache
def _shipped_table() -> StrategyTable:
    return StrategyTable.load()


def strategy_table(path: str | Path | None = None) -> StrategyTable:
    """The strategy table at `path`, or the shipped one (read once, on first use)."""
    return _shipped_table() if path is None else StrategyTable.load(path)


def families(table: StrategyTable | None = None) -> list[str]:
    """The model families the strategy table knows."""
    return sorted((table or strategy_table()).families)


def host_ram_gb(family: str, *, on_cpu: bool, table: StrategyTable | None = None) -> float:
    """The RAM a model of `family` needs on the host: its ladder's largest peak estimate (the weights pass
    through host memory while loading), twice that when it runs on the CPU (float32 weights, not half)."""
    ladder = (table or strategy_table()).family(family)["ladder"]
    peak = max((float(r.get("est_peak_vram_gb") or 0.0) for r in ladder), default=0.0)
    return peak * (2.0 if on_cpu else 1.0)


#: Share of a GPU's memory a rung's estimate may use (the table keeps ~15 % free, see strategies.toml).
USABLE_VRAM = 0.85


#: Under sequential offload a ControlNet's weights stream like the UNet's: only this share of it stays resident.
SEQUENTIAL_SHARE = 0.1


def controlnet_gb(family: str, table: StrategyTable | None = None) -> float:
    """The VRAM one ControlNet of `family` adds (its weights in the family's GPU dtype): the family's
    `controlnet_gb` in strategies.toml, 0.0 when it names none."""
    return float((table or strategy_table()).family(family).get("controlnet_gb", 0.0))


def _with_controls(rung: Mapping[str, Any], controls: int, per_net: float) -> float:
    """A rung's estimated peak with `controls` ControlNets of `per_net` GB each."""
    share = SEQUENTIAL_SHARE if rung.get("offload") == "sequential" else 1.0
    return (rung.get("est_peak_vram_gb") or 0.0) + controls * per_net * share


def max_controls(family: str, profile: HardwareProfile, limit: int, *, table: StrategyTable | None = None) -> int:
    """How many ControlNets (at most `limit`) fit on `profile`'s GPU with `family` on the cheapest GPU rung of its
    ladder, counting the card's whole memory; `limit` on a CPU (RAM is not estimated per ControlNet)."""
    table = table or strategy_table()
    if profile.tier == "cpu" or not profile.vram_total_gb:
        return limit
    ladder = table.family(family)["ladder"]
    per_net = controlnet_gb(family, table)
    fits = [n for n in range(limit + 1)
            if any(r["device"] == "gpu" and _with_controls(r, n, per_net) <= profile.vram_total_gb for r in ladder)]
    return max(fits, default=0)


#: VRAM left unclaimed when the start is chosen from the free figure (allocator slack, the CUDA context's growth).
FREE_MARGIN_GB = 0.5


def choose(family: str, profile: HardwareProfile, *, table: StrategyTable | None = None, controls: int = 0,
           speed: str = "default", adapters: int = 0, **overrides: Any) -> MemoryStrategy:
    """The memory strategy for `family` on `profile`.

    1. The tier's starting rung comes from the table (the card's total memory).
    2. With `controls` ControlNets on a GPU, their memory (`controlnet_gb` each) is added to the rungs' estimates
       and the start moves down the ladder until the sum fits `USABLE_VRAM` of the card.
    3. With `profile.vram_free_gb` known (other processes count) and below the usable share of the card, a start
       that does not fit the free memory less `FREE_MARGIN_GB` moves down to the first GPU rung that fits
       `min(USABLE_VRAM * total, free - margin)`, or the cheapest GPU rung when none does; `notes` says so.
    4. `speed="max"` starts on the family's `gpu-fast` rung (fused QKV, torch.compile; bfloat16 where
       `profile.bf16`, else float16) when the family has one and it fits; on a CPU it adds fused QKV and
       torch.compile of the denoiser to the CPU rung. Where it cannot, `notes` says why. With `adapters` (LoRA),
       fused QKV is left off: the adapters patch the unfused projections.
    5. Keyword `overrides` (e.g. `compile=True`, `vae_tiling=True`) replace single fields and are recorded on the
       strategy, so a speed trick is always opt-in and visible in the run's record.
    """
    if speed not in SPEEDS:
        raise InvalidParameter(f"Unknown speed {speed!r}.", value=speed,
                               fix=f'use speed="default" (eager, safe) or "max" (the {FAST_RUNG} rung: compiled, '
                                   "fused; opt-in).")
    table = table or strategy_table()
    spec = table.family(family)
    tier, ladder = profile.tier, spec["ladder"]
    names = [r["name"] for r in ladder]
    start = names.index(spec["tiers"][tier])
    per_net = controlnet_gb(family, table)
    notes: list[str] = []

    def est(i: int) -> float:
        return _with_controls(ladder[i], controls if per_net else 0, per_net)

    total, free = profile.vram_total_gb, profile.vram_free_gb
    room = USABLE_VRAM * total if total else float("inf")
    if free is not None and profile.device == "cuda":
        room = min(room, free - FREE_MARGIN_GB)
    if ladder[start]["device"] == "gpu" and total:
        below = [i for i in range(start, len(names)) if ladder[i]["device"] == "gpu"]
        if controls and per_net:
            start = next((i for i in below if est(i) <= USABLE_VRAM * total), below[-1])
        if free is not None and profile.device == "cuda" and room < USABLE_VRAM * total and est(start) > room:
            fits = next((i for i in below if i >= start and est(i) <= room), None)
            start = below[-1] if fits is None else fits
            notes.append(f"started on {names[start]}: {free:.1f} GB free of {total:.0f} GB (other processes count)"
                         + ("" if fits is not None else f"; even this cheapest GPU rung (est. {est(start):.1f} GB) "
                                                        "does not fit, so it may run out of memory"))
    fast = names.index(FAST_RUNG) if FAST_RUNG in names else None
    extra: dict[str, Any] = {}
    if speed == "max":
        if tier == "cpu":
            extra = {"fuse_qkv": True, "compile": True, "compile_mode": "default"}
            notes.append(f"speed=max on a CPU: fused QKV and torch.compile of the denoiser on {names[start]}")
        elif fast is None:
            notes.append(f"speed=max: family {family!r} has no {FAST_RUNG} rung; started on {names[start]}")
        elif profile.device != "cuda":
            notes.append(f"speed=max: {FAST_RUNG} needs CUDA, this is {profile.device}; started on {names[start]}")
        elif est(fast) <= room:
            start = fast
            extra = {"dtype": "bfloat16" if profile.bf16 else "float16"}
            notes.append(f"speed=max: {FAST_RUNG} in {extra['dtype']} ("
                         + ("the GPU runs bfloat16)" if profile.bf16 else "no bfloat16 on this GPU)"))
        else:
            notes.append(f"speed=max: {FAST_RUNG} (est. {est(fast):.1f} GB) does not fit the {max(room, 0):.1f} GB "
                         f"usable here; started on {names[start]}")
    strategy = dataclasses.replace(table.strategy(family, start, tier), **extra)
    if controls and per_net and strategy.device == "gpu" and strategy.est_peak_vram_gb is not None:
        # the record's estimate is the pipeline's plus its ControlNets'
        strategy = dataclasses.replace(strategy, est_peak_vram_gb=round(est(start), 2))
    if adapters and strategy.fuse_qkv:
        strategy = dataclasses.replace(strategy, fuse_qkv=False)
        notes.append("fuse_qkv off: LoRA adapters patch the unfused q/k/v projections")
    if overrides:
        bad = set(overrides) - _RUNG_FIELDS
        if bad:
            raise InvalidParameter(f"Unknown strategy override(s) {sorted(bad)}.", value=sorted(bad),
                                   fix=f"override only {sorted(_RUNG_FIELDS - {'name', 'device'})}.")
        strategy = dataclasses.replace(strategy, **overrides,
                                       overrides=tuple(f"{k}={v}" for k, v in sorted(overrides.items())))
    return dataclasses.replace(strategy, notes=tuple(notes)) if notes else strategy


def degrade(strategy: MemoryStrategy, *, table: StrategyTable | None = None,
            tried: list[MemoryStrategy] | None = None) -> MemoryStrategy:
    """The next cheaper strategy on the same device, for a retry after out-of-memory.

    Raises `OutOfMemory` when `strategy` is already the cheapest rung; its message lists what
    was tried (pass `tried`) and what the user can change.
    """
    table = table or strategy_table()
    ladder = table.family(strategy.family)["ladder"]
    for i in range(strategy.rung + 1, len(ladder)):
        if ladder[i]["device"] == strategy.device:
            return table.strategy(strategy.family, i, strategy.tier)
    path = " → ".join(s.name for s in (tried or [])) or strategy.name
    if strategy.device == "gpu":
        fix = ("lower the size, frame count or batch; close other programs using the GPU; choose a smaller "
               "model (e.g. a turbo or 1.3B variant); or run on a machine with more VRAM (Colab, Kaggle).")
    else:
        fix = ("lower the size, frame count or batch; close other programs; or use a machine with more RAM "
               "or a GPU.")
    raise OutOfMemory(
        f"Out of memory for family {strategy.family!r} on tier {strategy.tier!r} after every cheaper strategy "
        f"({path}); {strategy.name!r} is the cheapest {strategy.device} strategy.",
        value=strategy.name, fix=fix,
    )


def strategy_matrix(table: StrategyTable | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """family → tier → strategy (as a dict) for every family and simulated tier."""
    table = table or strategy_table()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for fam in families(table):
        out[fam] = {}
        for tier in TIERS:
            prof = HardwareProfile.simulated(None if tier == "cpu" else float(tier))
            out[fam][tier] = choose(fam, prof, table=table).to_dict()
    return out

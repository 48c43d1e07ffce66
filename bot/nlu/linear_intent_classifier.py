"""A linear intent classifier on character and word n-grams of normalised text.

Built for our data: six scripts, informal spelling, Latin-script Arabic and Persian, tens to a
few hundred examples per intent and language, and no pretrained weights. The text is normalised
as in `bot.languages.normalise` (case, diacritics, Arabic/Persian letter variants, zero-width
characters, Latin accents), so "كيف"/"کیف" or "français"/"francais" look the same. Features:
character 2–5-grams within word boundaries and word 1–2-grams, log-scaled counts weighted by
inverse document frequency and L2-normalised. Model: a linear classifier trained by stochastic
gradient descent on the logistic loss (probabilities for Rasa's FallbackClassifier), with balanced
class weights and a fixed seed. Measurements and the alternatives tried (DIET, Rasa's logistic
regression) are in docs/decisions/0004-intent-classifier.md.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

import joblib
import numpy as np
import scipy.sparse
import scipy.special
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import normalize

from bot.languages import normalise

log = logging.getLogger(__name__)
MODEL_FILE = "linear_intent_classifier.joblib"
WORD_PATTERN = r"(?u)\b\w+\b"  # keep one-letter words ("y", "k", "3")


class NgramFeatures:
    """Normalised text → log-scaled, IDF-weighted, L2-normalised character + word n-gram vectors."""

    def __init__(self, char_ngrams=(2, 5), word_ngrams=(1, 2)) -> None:
        self.vectorisers = [
            CountVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngrams), lowercase=False, dtype=np.float32),
            CountVectorizer(token_pattern=WORD_PATTERN, ngram_range=tuple(word_ngrams), lowercase=False,
                            dtype=np.float32),
        ]
        self.idf: Optional[np.ndarray] = None

    def _counts(self, texts: List[str]) -> scipy.sparse.csr_matrix:
        normalised = [normalise(t) for t in texts]
        matrix = scipy.sparse.hstack([v.transform(normalised) for v in self.vectorisers]).tocsr()
        matrix.data = np.log1p(matrix.data)
        return matrix

    def fit_transform(self, texts: List[str]) -> scipy.sparse.csr_matrix:
        normalised = [normalise(t) for t in texts]
        for vectoriser in self.vectorisers:
            vectoriser.fit(normalised)
        matrix = self._counts(texts)
        document_frequency = np.asarray((matrix > 0).sum(axis=0)).ravel()
        self.idf = (np.log((1.0 + matrix.shape[0]) / (1.0 + document_frequency)) + 1.0).astype(np.float32)
        return self._weight(matrix)

    def transform(self, texts: List[str]) -> scipy.sparse.csr_matrix:
        return self._weight(self._counts(texts))

    def _weight(self, matrix: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
        return normalize(matrix.multiply(self.idf).tocsr())


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class LinearIntentClassifier(GraphComponent, IntentClassifier):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "char_ngrams": [2, 5],
            "word_ngrams": [1, 2],
            "alpha": 1e-6,  # regularisation of the SGD classifier
            "epochs": 50,
            "random_seed": 42,
            "ranking_length": 10,
        }

    def __init__(self, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
                 features: Optional[NgramFeatures] = None, model: Optional[SGDClassifier] = None) -> None:
        self.config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self.features = features
        self.model = model

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "LinearIntentClassifier":
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        examples = [e for e in training_data.intent_examples if e.get(INTENT) and e.get(TEXT)]
        labels = [e.get(INTENT) for e in examples]
        if len(set(labels)) < 2:
            log.warning("LinearIntentClassifier: fewer than two intents in the training data; not trained")
            return self._resource
        self.features = NgramFeatures(self.config["char_ngrams"], self.config["word_ngrams"])
        matrix = self.features.fit_transform([e.get(TEXT) for e in examples])
        self.model = SGDClassifier(loss="log_loss", alpha=self.config["alpha"], max_iter=self.config["epochs"],
                                   tol=1e-4, class_weight="balanced", random_state=self.config["random_seed"])
        self.model.fit(matrix, labels)
        self.model.coef_ = self.model.coef_.astype(np.float32)
        self.persist()
        return self._resource

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            if self.model is None or not isinstance(text, str) or not text.strip():
                message.set(INTENT, {INTENT_NAME_KEY: None, PREDICTED_CONFIDENCE_KEY: 0.0}, add_to_output=True)
                message.set(INTENT_RANKING_KEY, [], add_to_output=True)
                continue
            probabilities = self._probabilities(self.features.transform([text]))
            order = np.argsort(probabilities)[::-1][: self.config["ranking_length"]]
            ranking = [{INTENT_NAME_KEY: str(self.model.classes_[i]), PREDICTED_CONFIDENCE_KEY: float(probabilities[i])}
                       for i in order]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages

    def _probabilities(self, row: scipy.sparse.csr_matrix) -> np.ndarray:
        """What `SGDClassifier.predict_proba` gives for one text (one-vs-rest logistic, normalised), computed
        from the few weights of the text's n-grams. scikit-learn multiplies by the transposed weight matrix,
        which scipy copies whole (classes × hundreds of thousands of n-grams) at every call: 30–40 ms a
        message, measured with py-spy under load (docs/decisions/0009-performance.md)."""
        if len(self.model.classes_) <= 2:
            return self.model.predict_proba(row)[0]
        coef = self.model.coef_
        scores = (coef[:, row.indices] @ row.data) + self.model.intercept_
        probabilities = scipy.special.expit(scores)
        total = probabilities.sum()
        return probabilities / total if total > 0 else np.full(len(probabilities), 1.0 / len(probabilities))

    def persist(self) -> None:
        with self._model_storage.write_to(self._resource) as directory:
            joblib.dump({"features": self.features, "model": self.model}, directory / MODEL_FILE, compress=3)

    @classmethod
    def load(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "LinearIntentClassifier":
        try:
            with model_storage.read_from(resource) as directory:
                stored = joblib.load(directory / MODEL_FILE)
        except (ValueError, FileNotFoundError):
            log.debug("LinearIntentClassifier: no trained model stored; predictions will be empty")
            return cls(config, model_storage, resource)
        return cls(config, model_storage, resource, features=stored["features"], model=stored["model"])

"""LSTM word-level language model (Zaremba et al. 2014; the PTB LSTM of Rasch et al. 2023).

Embedding -> dropout -> multi-layer ``nn.LSTM`` (dropout between layers) -> dropout ->
``nn.Linear`` decoder over the vocabulary. After :func:`analoglib.convert_to_analog` the LSTM
(input and recurrent projections of every layer) and the decoder run on simulated crossbars;
the embedding stays digital, as in the Rasch et al. 2023 recipe
(``docs/model.md#recipe-resnet-lstm``: "embedding kept digital").

References:
    Zaremba, Sutskever and Vinyals 2014, arXiv:1409.2329 ("small": 2 x 200, "medium":
    2 x 650); Rasch et al. 2023 (PTB LSTM, 13.3M mapped parameters = the medium model);
    PyTorch ``examples/word_language_model``.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LSTMLanguageModel"]


class LSTMLanguageModel(nn.Module):
    """Next-word LSTM language model on ``(batch, time)`` token ids.

    ``forward`` starts the hidden state at zero (stateless segments, as used for training);
    :meth:`forward_with_state` continues from a given state (as used for evaluation). Both work
    digitally and after analog conversion (``AnalogLSTM`` accepts the same state).

    Args:
        vocab_size: Number of words (input and output classes).
        embedding_dim: Width of the word embedding (the LSTM input size).
        hidden_size: LSTM hidden units per layer.
        num_layers: Stacked LSTM layers.
        dropout: Dropout probability on the embedding, between LSTM layers and before the
            decoder (0.5 for Zaremba's medium model).
        init_range: Embedding and decoder weights start uniform in ``[-init_range,
            init_range]`` (decoder bias 0); the LSTM keeps torch's default initialisation.

    Shape:
        Input ``(batch, time)`` ``torch.long`` ids; output ``(batch, time, vocab_size)`` logits.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        dropout: float = 0.2,
        init_range: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_dim", embedding_dim),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 1.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout = {dropout!r} is not allowed: expected a value in [0, 1).")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)
        nn.init.uniform_(self.embedding.weight, -init_range, init_range)
        nn.init.uniform_(self.decoder.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits of the next word at every position, the LSTM state starting at zero.

        Args:
            tokens: Token ids, shape ``(batch, time)``.

        Returns:
            Logits of shape ``(batch, time, vocab_size)``.
        """
        return self.forward_with_state(tokens)[0]

    def forward_with_state(
        self, tokens: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Logits and final LSTM state, continuing from ``state`` (for consecutive segments).

        Args:
            tokens: Token ids, shape ``(batch, time)``.
            state: ``(h, c)`` from the previous segment, each ``(num_layers, batch,
                hidden_size)``, or None to start from zero. It is detached (no gradient flows
                into earlier segments).

        Returns:
            Logits ``(batch, time, vocab_size)`` and the final ``(h, c)``.
        """
        if state is not None:
            state = (state[0].detach(), state[1].detach())
        x = self.drop(self.embedding(tokens))  # (batch, time, embedding_dim)
        hidden, new_state = self.lstm(x, state)  # (batch, time, hidden_size)
        logits = self.decoder(self.drop(hidden))  # (batch, time, vocab_size)
        return logits, new_state

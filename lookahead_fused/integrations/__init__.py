"""Callbacks for training frameworks, one module per framework, imported only when asked for:
`lookahead_fused.integrations.transformers` (needs transformers) and
`lookahead_fused.integrations.lightning` (needs lightning). `import lookahead_fused` imports neither."""

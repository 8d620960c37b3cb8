"""The demo: a Gradio app and an OpenAI-compatible Images API over `dalle_core.Dalle`."""

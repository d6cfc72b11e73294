"""dialogue: a world model of conversations (a Hugging Face encoder + the worldmodel RSSM over turns)."""

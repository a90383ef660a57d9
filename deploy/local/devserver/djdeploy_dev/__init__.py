"""Development-only settings for `inv up --dev` (mounted read-only into the app container; never in the image)."""

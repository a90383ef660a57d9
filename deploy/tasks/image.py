"""Tasks: build the app image, smoke-test it."""

from deploy.tasks._base import task


@task(help={"tag": "image tag (default: git short SHA, with -dirty when the tree has changes)",
            "quiet": "do not stream the build log"})
def build(c, tag=None, quiet=False):
    """Build the app image and tag it with the git SHA and latest."""
    from deploy.image import builder

    built = builder.build(tag=tag, quiet=quiet)
    print(f"built {built.ref} (also :latest)  size {builder.human_size(built.size)}  in {built.seconds:.1f}s")


@task(help={"image": "image to test (default: APP_IMAGE:<git short SHA>, the one `inv build` made)"})
def smoke(c, image=None):
    """Run the image without a database and check that it serves."""
    from deploy.core import gitinfo
    from deploy.local import localenv
    from deploy.image import smoke as smoke_mod

    settings = localenv.load()
    ref = image or f"{settings['APP_IMAGE']}:{gitinfo.current_tag()}"
    print(f"smoke test of {ref}")
    timings = smoke_mod.run(ref, page_path=settings["SMOKE_PATH"], page_text=settings.get("SMOKE_TEXT", ""))
    print(f"smoke passed: first answer {timings['first_answer']:.2f}s, stop {timings['stop']:.2f}s")

from importlib import resources

import jinja2


def environment(target: str) -> jinja2.Environment:
    """The jinja2 environment of one target's templates (``templates/<target>/``): strict
    undefined names, no autoescaping, whitespace control for readable generated code."""
    folder = resources.files("bnc.templates") / target
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )

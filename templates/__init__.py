from importlib import resources

import jinja2


def environment(target: str) -> jinja2.Environment:
    """The jinja2 environment of one target's templates (``templates/<target>/``, then the
    shared ``templates/common/``): strict undefined names, no autoescaping, whitespace control
    for readable generated code."""
    root = resources.files("bnc.templates")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(root / target), str(root / "common")]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )

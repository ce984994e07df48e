# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Options every bundle module takes (bundle_build, bundle_verify, bundle_import); their
argument spec is files.COMMON_ARGS."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  workers:
    description: "Files hashed at once; the number of cores when unset."
    type: int
  progress_file:
    description: "File the module keeps its progress in (stage, bytes done, total) while it runs, for the bundle_wait action to show."
    type: path
"""

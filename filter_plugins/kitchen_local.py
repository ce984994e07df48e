# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters of the single-host kitchen's roles."""

from ansible.errors import AnsibleFilterError


def htpasswd(username, password, current=""):
    """The htpasswd file of one user with a bcrypt hash (the only kind docker-registry reads).
    The current file is returned unchanged while its entry for `username` still verifies the
    password, so a rerun changes nothing (bcrypt salts differ every time)."""
    import bcrypt

    if not username or ":" in username:
        raise AnsibleFilterError("htpasswd: the user name %r is empty or holds ':'" % (username,))
    if not password:
        raise AnsibleFilterError("htpasswd: the password of %s is empty" % username)
    for line in (current or "").splitlines():
        name, _, hashed = line.partition(":")
        if name == username and hashed.startswith("$2"):
            try:
                if bcrypt.checkpw(password.encode(), hashed.encode()) and current.strip() == line.strip():
                    return current if current.endswith("\n") else current + "\n"
            except ValueError:
                pass
    return "%s:%s\n" % (username, bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode())


class FilterModule:
    def filters(self):
        return {"kitchen_htpasswd": htpasswd}

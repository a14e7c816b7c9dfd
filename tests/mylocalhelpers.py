"""A helper module next to the 'notebook' (here: the tests), not installed anywhere."""


def triple(x):
    return 3 * x


class QuotaExceeded(Exception):
    """An exception whose __init__ does not take its args: it cannot be rebuilt as cls(*args)."""

    def __init__(self, user, limit):
        super().__init__(f"user {user} is over the limit of {limit}")
        self.user, self.limit = user, limit


def charge(user):
    raise QuotaExceeded(user, 10)

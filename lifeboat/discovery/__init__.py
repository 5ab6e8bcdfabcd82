"""`lifeboat discover`: build a topology file from what two live projects hold.

``snapshot`` is what the reads bring back (plain data), ``guesses`` the rules that pick
regions, records, buckets and the url-map out of it, ``build`` the topology they make
and ``render`` its YAML, each guess said in a comment. The reads are in
``tasks/discovery.py``; none of this changes anything in the cloud.
"""

from __future__ import annotations


class DiscoveryError(Exception):
    """Discovery cannot build a topology: a read failed, or something it needs is missing.

    The message names what: the project, the resource, the call.
    """

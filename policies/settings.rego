# Template settings: the knobs that distinguish strict, standard and permissive.
#
# These defaults are the `standard` template. A template file in templates/
# (same package) overrides some of them; a policy directory may ship its own.
package portcullis.settings

import rego.v1

default template := "standard"

# Non-container resources (images, networks, volumes, system, swarm, plugins)
# may be granted through the `resources` object of a relationship.
default resource_rights := true

# Dangerous rights (exec, attach, create, update, remove, file writes, tunnels)
# may come from a relationship whose target is the wildcard `*`.
default wildcard_dangerous := true

# Tunnels (session, grpc, attach_ws) may be opened with `allow_tunnels`.
default tunnels := true

# Read-only system, image, network and volume actions are allowed to every
# identified caller, with or without a relationship.
default public_read := false

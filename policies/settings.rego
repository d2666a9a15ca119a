# Template settings: the knobs that distinguish strict, standard and permissive.
#
# Every template's settings are here, chosen by `template`, which
# `template.rego` sets (`serve --template T` serves these files with T there;
# in a policy directory of your own, edit it). One table rather than an
# override file per template in the same package keeps every template
# loadable at once, as `opa check` and `opa test` load a directory: a test of
# a template selects it with `with data.portcullis.settings.template as T`.
package portcullis.settings

import rego.v1

default template := "standard"

# Non-container resources (images, networks, volumes, system, swarm, plugins)
# may be granted through the `resources` object of a relationship.
default resource_rights := true

resource_rights := false if template == "strict"

# Dangerous rights (exec, attach, create, update, remove, file writes, tunnels)
# may come from a relationship whose target is the wildcard `*`.
default wildcard_dangerous := true

wildcard_dangerous := false if template == "strict"

# Tunnels (session, grpc, attach_ws) may be opened with `allow_tunnels`.
default tunnels := true

tunnels := false if template == "strict"

# Read-only system, image, network and volume actions are allowed to every
# identified caller, with or without a relationship.
default public_read := false

public_read := true if template == "permissive"

# The `strict` template: only container rights, named targets for anything
# dangerous, no tunnels.
package portcullis.settings

import rego.v1

template := "strict"

resource_rights := false

wildcard_dangerous := false

tunnels := false

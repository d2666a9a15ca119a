# The `permissive` template: standard rules, plus read-only system, image,
# network and volume actions for every identified caller.
package portcullis.settings

import rego.v1

template := "permissive"

public_read := true

# The template in force: strict, standard or permissive (see settings.rego).
#
# `serve --template T` and `policy test --template T` serve the embedded
# policies with T here. In a policy directory of your own, edit this line.
package portcullis.settings

import rego.v1

template := "standard"

package portcullis_test

import rego.v1

test_placeholder if true

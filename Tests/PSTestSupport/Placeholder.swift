// PSTestSupport: placeholder.

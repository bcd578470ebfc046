// PSCoordinatorTests: placeholder.

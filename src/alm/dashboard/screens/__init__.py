"""Dashboard screens: the runs list, one run (monitor / sample / log), and the modal dialogs."""

"""``iotnotify local``: the whole product on one machine, offline."""

'use strict';
const { Client, EventStream, makeEvent, customerRef } = require('./lib/client');
const { ShopkeeperError } = require('./lib/errors');
const { toStruct, fromStruct, toTimestamp } = require('./lib/convert');

module.exports = { Client, EventStream, ShopkeeperError, makeEvent, customerRef, toStruct, fromStruct, toTimestamp };
